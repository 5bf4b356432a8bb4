"""ELIT on every new scan frame, while the user scans.

:class:`LiveAtomFinder` is a :class:`~nion_autoem.swift.live_frames.LiveFrameAnalysis`:
the newest completed frame is analysed on a worker thread, never falling
behind the scan, and the same three data items (frame with labelled columns,
classified-atoms table, uncertainty map) update in place with every frame.
"""

from __future__ import annotations

import typing

import numpy
from nion.data import DataAndMetadata

from nion_autoem.plans.atom_finding import atom_products
from nion_autoem.products import Product
from nion_autoem.swift.live_frames import LiveFrameAnalysis
from nion_autoem.xdata import frame_from_xdata

if typing.TYPE_CHECKING:
    from nion.swift import DocumentController


class LiveAtomFinder(LiveFrameAnalysis):
    """Find atoms in every completed frame of a scan channel.

    Parameters
    ----------
    document_controller : DocumentController
        Where the results go.
    scan_id : str
        Hardware-source id of the scan (``"usim_scan_device"`` on the simulator).
    channel : str
        Scan channel to analyse.
    ensemble : str or None
        ELIT model name or path (MoS2 by default).

    Examples
    --------
    >>> finder = LiveAtomFinder(document_controller, "usim_scan_device")  # doctest: +SKIP
    >>> finder.start()   # then scan as usual; finder.stop() when done  # doctest: +SKIP
    """

    name = "live atoms"

    def __init__(self, document_controller: DocumentController.DocumentController, scan_id: str, *, channel: str = "HAADF", ensemble: str | None = None) -> None:
        super().__init__(document_controller, scan_id, channel=channel)
        self.__ensemble_name = ensemble
        self.__ensemble: typing.Any = None

    def prepare(self) -> None:
        from nion_autoem_elit import api

        self.__ensemble = api.resolve_ensemble(self.__ensemble_name)

    def analyse(self, xdata: DataAndMetadata.DataAndMetadata) -> tuple[typing.Sequence[Product], dict[str, int], str]:
        from nion_autoem_elit import api

        frame = frame_from_xdata(xdata)
        result = api.find_atoms(numpy.asarray(xdata.data, dtype=float), self.__ensemble)
        return atom_products(xdata, frame, result), result.counts(), f"elit/{self.__ensemble_name or 'mos2'}"
