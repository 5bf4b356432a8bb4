"""Typed access to the twin a :class:`~nion_autoem.swift.usim_twin.TwinConfiguration` has selected.

``TwinConfiguration.twin`` is a ``TwinSample | None`` (``None`` for one of usim's
own samples), and the ``TwinSample`` protocol has none of the ground truth the
tests check against.  These accessors narrow it to the concrete twin or fail
with a clear message.
"""

from __future__ import annotations

import typing

from nion_autoem.twin.mos2 import MoS2Sample
from nion_autoem.twin.plasmonic import PlasmonicSample

if typing.TYPE_CHECKING:
    from nion_autoem.swift.usim_twin import TwinConfiguration

_T = typing.TypeVar("_T")


def _selected_twin(configuration: TwinConfiguration, kind: type[_T]) -> _T:
    twin = configuration.twin
    if not isinstance(twin, kind):
        raise AssertionError(f"the configuration's selected sample is {twin!r}, not a {kind.__name__}")
    return twin


def mos2_twin(configuration: TwinConfiguration) -> MoS2Sample:
    """The selected twin, which must be the MoS2 sample."""
    return _selected_twin(configuration, MoS2Sample)


def plasmonic_twin(configuration: TwinConfiguration) -> PlasmonicSample:
    """The selected twin, which must be the plasmonic (Ag nanoparticle) sample."""
    return _selected_twin(configuration, PlasmonicSample)
