"""Live atom finding: survey frames, find and classify every column with ELIT, publish them.

Each frame becomes three products, updated in place from frame to frame:

- the frame itself with a point graphic on every column, labelled with its
  class (and a ``?`` where the ensemble is unsure);
- a classified-atoms table (one row per column: y, x in nm, class index, class
  probability, uncertainty), with the class names in its metadata;
- an uncertainty map: the ensemble's per-pixel variance, summed over classes.

With ``adapt=True`` the first frame also runs one ELIT self-training iteration
and the adapted ensemble is used from then on, so the model follows the
imaging conditions of this session.
"""

from __future__ import annotations

import dataclasses
import pathlib
import typing

import numpy
import numpy.typing
from nion.data import Calibration
from nion.data import DataAndMetadata

from nion_autoem import views
from nion_autoem.actions import Survey
from nion_autoem.geometry import ScanFrame
from nion_autoem.instrument import Measurement
from nion_autoem.plan import Checkpoint
from nion_autoem.plan import PlanGenerator
from nion_autoem.plan import Publish
from nion_autoem.plan import Report
from nion_autoem.plan import SubPlan
from nion_autoem.products import Display
from nion_autoem.products import Product

if typing.TYPE_CHECKING:
    from nion_autoem_elit.atoms import AtomFindingResult

_NDArray = numpy.typing.NDArray[typing.Any]

TABLE_COLUMNS = ("y_nm", "x_nm", "class", "probability", "uncertainty")
Lattice = typing.Literal["mos2", "graphene"]
"""Lattices an ELIT iteration can self-train on."""

#: Columns of a class this close to the frame's edge are not offered as targets (partly outside the frame, their class is a guess).
EDGE_MARGIN_NM = 0.1
#: Uncertain columns ringed on the class map, at most (all are in the table).
MAX_MARKED_UNCERTAIN = 50


def atom_products(image: DataAndMetadata.DataAndMetadata, frame: ScanFrame, result: AtomFindingResult, *, unsure_above: float = 0.2,
                  key_prefix: str = "") -> list[Product]:
    """The class map, the classified-atoms table and the uncertainty map of one frame.

    - *class map*: the frame in grey with a coloured disc on every column, one
      colour per class, the legend and counts in its caption; the most
      uncertain columns (at most :data:`MAX_MARKED_UNCERTAIN`) are ringed in
      white, drawn into the map: no Swift graphic at all, so thousands of
      columns never stall Swift's Inspector;
    - *table*: every column (y, x in nm, class name, probability,
      uncertainty) as CSV beside the journal; the item shows the counts per class;
    - *uncertainty map*: the ensemble's per-pixel variance, in a colour map.

    Parameters
    ----------
    image : DataAndMetadata
        The frame the atoms were found in.
    frame : ScanFrame
        Its scan geometry (pixels to nm).
    result : AtomFindingResult
        What :func:`nion_autoem_elit.find_atoms` returned for it.
    unsure_above : float
        Columns whose uncertainty exceeds this count as uncertain.
    """
    names = list(result.class_names)
    counts = result.counts()
    positions_nm = frame.pixel_to_nm(result.positions) if len(result) else numpy.zeros((0, 2))
    unsure = [int(i) for i in numpy.argsort(-numpy.asarray(result.uncertainties)) if result.uncertainties[i] > unsure_above][:MAX_MARKED_UNCERTAIN]
    overlay = views.class_overlay(numpy.asarray(image.data, dtype=float), result.positions, result.classes, names, ringed=unsure)
    n_unsure = int(numpy.sum(numpy.asarray(result.uncertainties) > unsure_above)) if len(result) else 0
    legend = views.legend(names, counts)
    caption = f"{len(result)} columns: {legend}; {n_unsure} uncertain" + (f" (the {len(unsure)} most uncertain ringed in white)" if unsure else "")
    # niondata keeps a colour image as B, G, R (the bytes of a little-endian BGRA pixel, nion.data.Image):
    # without the swap Swift shows Mo orange and S1 blue, not what the legend says.
    class_map = DataAndMetadata.new_data_and_metadata(numpy.ascontiguousarray(overlay[..., ::-1]), intensity_calibration=Calibration.Calibration(),
                                                      dimensional_calibrations=image.dimensional_calibrations,
                                                      metadata={"nion_autoem": {"legend": legend, "counts": counts}},
                                                      data_descriptor=DataAndMetadata.DataDescriptor(False, 0, 2))
    rows = tuple((float(y), float(x), names[int(k)], float(p), float(u))
                 for (y, x), k, p, u in zip(positions_nm, result.classes, result.class_probabilities, result.uncertainties, strict=True))
    count_values = numpy.asarray([counts.get(name, 0) for name in names], dtype=float)
    counts_xdata = DataAndMetadata.new_data_and_metadata(
        count_values, intensity_calibration=Calibration.Calibration(units="columns"), dimensional_calibrations=[Calibration.Calibration(units="class")],
        metadata={"nion_autoem": {"columns": list(TABLE_COLUMNS), "class_names": names, "counts": counts,
                                  "mean_uncertainty": float(numpy.mean(result.uncertainties)) if len(result) else None}})
    variance = numpy.asarray(result.variance).sum(axis=0)
    uncertainty_xdata = DataAndMetadata.new_data_and_metadata(variance, intensity_calibration=Calibration.Calibration(units="variance"),
                                                              dimensional_calibrations=image.dimensional_calibrations)
    return [Product(f"{key_prefix}frame", "Atom classes (ELIT)", class_map, caption=caption),
            Product(f"{key_prefix}atoms", "Classified atoms (ELIT)", counts_xdata, caption=f"counts per class ({', '.join(names)}): {legend}",
                    table=views.Table(TABLE_COLUMNS, rows)),
            Product(f"{key_prefix}uncertainty", "ELIT uncertainty map", uncertainty_xdata, caption="per-pixel variance of the ensemble, summed over classes",
                    display=Display(color_map="magma"))]


class AtomFinding:
    """Survey ``frames`` frames and find the atoms in each with an ELIT ensemble.

    Parameters
    ----------
    frames : int
        How many frames to take (the live mode stops after these).
    survey_frame : ScanFrame or None
        Frame geometry; None keeps the current scan.
    pixel_time_us : float or None
        Pixel time of each frame.
    ensemble : str or None
        Packaged model name (``"mos2"``, ``"graphene"``), a saved-model path, a
        model in the repository (``"mos2@production"``, ``"mos2@3"``: see
        :mod:`nion_autoem_models.repository`, in ``$NION_AUTOEM_MODELS`` or
        ``~/nion-autoem/models``), or None for MoS2.  A repository alias is
        resolved once, when the plan is made, and the run journals the
        version (``elit/mos2@3``) with every decision.
    adapt : bool
        Run one ELIT self-training iteration on the first frame.
    lattice : str
        Lattice for self-training (``"mos2"`` or ``"graphene"``).
    """

    name = "atom-finding"

    def __init__(self, *, frames: int = 1, survey_frame: ScanFrame | None = None, pixel_time_us: float | None = None, ensemble: str | None = None,
                 adapt: bool = False, lattice: Lattice = "mos2") -> None:
        if frames < 1:
            raise ValueError(f"frames must be at least 1, got {frames}")
        if lattice not in ("mos2", "graphene"):
            raise ValueError(f"lattice must be 'mos2' or 'graphene', got {lattice!r}")
        self.frames = frames
        self.survey_frame = survey_frame
        self.pixel_time_us = pixel_time_us
        self.ensemble_name = ensemble
        self.adapt = adapt
        self.lattice = lattice
        self.results: list[AtomFindingResult] = []
        self.__ensemble: typing.Any = None
        self.__version = f"elit/{ensemble or 'mos2'}"
        #: A model from the repository ("mos2@production"), resolved once here: a promotion during the run never swaps it.
        self.model_ref: str | None = None
        if ensemble is not None and "@" in ensemble and not pathlib.Path(ensemble).exists():
            from nion_autoem_models.repository import open_repository

            # the folder or the lab's MLflow registry that $NION_AUTOEM_MODELS names
            self.model_ref = open_repository().resolve(ensemble).ref
            self.__version = f"elit/{self.model_ref}"

    @property
    def model_version(self) -> str:
        return self.__version

    @property
    def parameters(self) -> dict[str, typing.Any]:
        return {"frames": self.frames, "survey_frame": self.survey_frame.to_dict() if self.survey_frame else None, "pixel_time_us": self.pixel_time_us,
                "ensemble": self.ensemble_name, "model_ref": self.model_ref, "adapt": self.adapt, "lattice": self.lattice}

    def fraction_done(self) -> float | None:
        return len(self.results) / self.frames

    def messages(self) -> PlanGenerator:
        self.results = []
        self.__ensemble = None
        result = None
        for index in range(self.frames):
            yield Checkpoint()
            frame = yield Survey(self.survey_frame, pixel_time_us=self.pixel_time_us, label=f"frame {index + 1}")
            result = yield from self.find_atoms_in(frame, index)
        assert result is not None
        counts = ", ".join(f"{n} {name}" for name, n in result.counts().items() if n)
        return f"{len(result)} columns in the last of {self.frames} frame(s): {counts or 'none'}"

    def find_atoms_in(self, measurement: Measurement, index: int = 0) -> SubPlan:
        """Find and classify the atoms of one frame (adapting the ensemble on the first, if asked); returns :class:`FoundAtoms`."""
        from nion_autoem_elit import api

        if self.__ensemble is None and self.model_ref is not None:
            from nion_autoem_models.repository import open_repository

            self.__ensemble = open_repository().load_ensemble(self.model_ref)  # its hash is checked
        if self.__ensemble is None:
            self.__ensemble = api.resolve_ensemble(self.ensemble_name)
        if self.adapt and index == 0:
            from nion_autoem_elit import lattices
            from nion_autoem_elit.iterative import elit_iteration

            lattice = lattices.mos2_lattice() if self.lattice == "mos2" else lattices.graphene_lattice()
            self.__ensemble, report = elit_iteration(self.__ensemble, numpy.asarray(measurement.xdata.data, dtype=float), lattice)
            self.__version = f"elit/{self.ensemble_name or 'mos2'}+adapted@frame{index + 1}"
            yield Report({"adaptation": report.as_dict()}, model_version=self.__version)
        atoms = yield from find_atoms(measurement, ensemble=self.__ensemble)
        self.results.append(atoms.result)
        yield Report(fraction=self.fraction_done())
        return atoms.result


@dataclasses.dataclass(frozen=True)
class FoundAtoms:
    """What :func:`find_atoms` found in a frame, with positions in the frame's scan-field nm."""

    result: AtomFindingResult
    frame: ScanFrame

    def positions_nm(self, kind: str | None = None, *, edge_margin_nm: float = EDGE_MARGIN_NM) -> list[tuple[float, float]]:
        """Scan-field positions of every column (in the finder's order), or of the columns of one class (e.g. ``"S1"``), surest first.

        For one class, columns closer than ``edge_margin_nm`` to the frame's
        edge are left out (part of such a column is outside the frame, so it
        looks like fewer atoms: an S2 cut by the edge passes for an S1), and
        the rest come surest first: ``positions_nm("S1")[:6]`` are the six
        columns ELIT is most certain are S1, not six in raster order.
        """
        if not len(self.result):
            return []
        positions_nm = self.frame.pixel_to_nm(self.result.positions).reshape(-1, 2)
        if kind is None:
            chosen = numpy.arange(len(self.result))
        else:
            short_side_nm = self.frame.fov_nm * min(self.frame.shape) / max(self.frame.shape)
            inside = self.frame.contains_nm(positions_nm, margin=min(max(edge_margin_nm, 0.0) / short_side_nm, 0.49))
            chosen = numpy.flatnonzero([self.result.class_names[int(k)] == kind and bool(ok) for k, ok in zip(self.result.classes, inside, strict=True)])
            chosen = chosen[numpy.argsort(numpy.asarray(self.result.uncertainties)[chosen], kind="stable")]
        return [(float(y), float(x)) for y, x in positions_nm[chosen]]

    def counts(self) -> dict[str, int]:
        return self.result.counts()


def find_atoms(measurement: Measurement, *, ensemble: typing.Any = None, key_prefix: str = "") -> SubPlan:
    """Sub-plan: find and classify every column of a surveyed frame with ELIT, publish them, return :class:`FoundAtoms`.

    ``ensemble`` is a loaded ensemble, a packaged model name (``"mos2"``,
    ``"graphene"``), a saved-model path, or None for MoS2.  Nothing is
    acquired: the sub-plan reports and publishes what the frame holds.  The
    sampling comes from ``measurement.frame.pixel_size_nm``: a frame outside the
    model's trained sampling is resampled (a frame too coarse for any
    resampling raises ``ValueError`` naming the sampling the model needs), and a
    frame without a lattice reports no columns, out of distribution.
    """
    from nion_autoem_elit import api

    if measurement.frame is None:
        raise ValueError(f"find_atoms needs a surveyed frame (a Survey's measurement), got a {measurement.kind!r} measurement")
    loaded = ensemble if ensemble is not None and not isinstance(ensemble, str) else api.resolve_ensemble(ensemble)
    # The frame's own calibration: the ensemble resamples it into its trained sampling and maps the columns back.
    frame = measurement.frame
    area_nm2 = frame.fov_nm**2 * min(frame.shape) / max(frame.shape)
    dose = measurement.dose_e / area_nm2 if measurement.dose_e > 0 else None  # the frame's own dose: checked against the model's trained range
    result = api.find_atoms(numpy.asarray(measurement.xdata.data, dtype=float), loaded, pixel_size_nm=frame.pixel_size_nm, dose_e_per_nm2=dose)
    yield Report({"atoms": len(result), "counts": result.counts(), "mean_uncertainty": float(numpy.mean(result.uncertainties)) if len(result) else None,
                  "pixel_size_nm": result.pixel_size_nm, "model_pixel_size_nm": result.model_pixel_size_nm, "in_trained_range": result.in_trained_range,
                  "out_of_distribution": result.out_of_distribution, "reason": result.reason, "warnings": list(result.warnings)})
    for product in atom_products(measurement.xdata, measurement.frame, result, key_prefix=key_prefix):
        yield Publish(product)
    return FoundAtoms(result, measurement.frame)
