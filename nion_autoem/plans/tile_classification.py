"""Few-shot tile classification in plans: survey frames, classify their tiles, publish the map.

Each frame becomes three products, updated in place from frame to frame:

- the *class map*: the frame in grey, every tile tinted with its class's
  colour (unknown tiles left grey), the legend with counts and area
  fractions in its caption;
- the *counts*: tiles and area fraction per class, as a table (CSV beside
  the journal);
- the *tiles*: one row per tile (position in pixels and scan-field nm,
  class, probability, distance to the nearest prototype), as a table.

:func:`classify_tiles_in` is the sub-plan other plans use (``yield from``)
to decide where to go next: it returns :class:`ClassifiedTiles`, whose
:meth:`~ClassifiedTiles.centres_nm` gives the tiles of a class, surest first.
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
from nion_autoem.products import Product

if typing.TYPE_CHECKING:
    from nion_autoem_fewshot.classifier import TileMap
    from nion_autoem_fewshot.support import SupportSet

_NDArray = numpy.typing.NDArray[typing.Any]

COUNT_COLUMNS = ("class", "tiles", "area_fraction")
#: How strongly a tile is tinted with its class colour over the grey frame.
TINT = 0.45

Features = typing.Literal["combined", "backbone", "texture"]
Smooth = float | typing.Literal["auto"]


def tile_class_overlay(image: _NDArray, class_image: _NDArray, class_names: typing.Sequence[str], *, grid_lines: _NDArray | None = None) -> _NDArray:
    """The frame in grey with every pixel tinted by its tile's class colour (class -1, unknown, stays grey), as RGB.

    Parameters
    ----------
    image : ndarray, shape (rows, cols)
        The frame.
    class_image : ndarray of int, shape (rows, cols)
        Class index of every pixel (``TileMap.class_image()``), -1 for unknown.
    class_names : sequence of str
        The classes; colours from :func:`nion_autoem.views.class_colours`.
    grid_lines : ndarray of bool, shape (rows, cols), optional
        Pixels to darken (tile borders).

    Returns
    -------
    ndarray of uint8, shape (rows, cols, 3), in R, G, B order

    Examples
    --------
    >>> rgb = tile_class_overlay(numpy.zeros((2, 4)), numpy.array([[0, 0, -1, -1]] * 2), ["amorphous"])
    >>> rgb[0, 0].tolist(), rgb[0, 3].tolist()  # amorphous has a spare colour (orange), unknown stays grey (black here)
    ([115, 63, 0], [0, 0, 0])
    >>> tile_class_overlay(numpy.ones((2, 2)) * [[0, 1]], numpy.zeros((2, 2), dtype=int), ["Mo"])[0, 1].tolist()
    [139, 173, 225]
    """
    image = numpy.asarray(image, dtype=float)
    class_image = numpy.asarray(class_image, dtype=int)
    if image.shape != class_image.shape:
        raise ValueError(f"class_image must have the image's shape {image.shape}, got {class_image.shape}")
    low, high = numpy.percentile(image, (1, 99.5)) if image.size else (0.0, 1.0)
    grey = numpy.clip((image - low) / (high - low if high > low else 1.0), 0.0, 1.0) * 200
    rgb = numpy.repeat(grey[..., numpy.newaxis], 3, axis=2)
    colours = numpy.asarray(views.class_colours(class_names), dtype=float).reshape(-1, 3)
    known = class_image >= 0
    if known.any():
        rgb[known] = (1 - TINT) * rgb[known] + TINT * colours[class_image[known]]
    if grid_lines is not None:
        rgb[grid_lines] *= 0.6
    return numpy.clip(numpy.round(rgb), 0, 255).astype(numpy.uint8)


def tile_products(image: DataAndMetadata.DataAndMetadata, tile_map: TileMap, *, support: SupportSet | None = None, key_prefix: str = "") -> list[Product]:
    """The class map, the counts table and the per-tile table of one classified frame.

    Parameters
    ----------
    image : DataAndMetadata
        The frame the tiles were cut from (its calibrations go onto the map).
    tile_map : TileMap
        What :func:`nion_autoem_fewshot.classify_tiles` returned for it.
    support : SupportSet, optional
        The support set used; its classes, counts and tile size go into the map's metadata.
    key_prefix : str
        Prefix for the product keys (several classifications in one run).
    """
    names = list(tile_map.class_names)
    counts = tile_map.counts()
    fractions = tile_map.area_fractions()
    grid = tile_map.grid
    lines = numpy.zeros(grid.image_shape, dtype=bool)
    lines[numpy.unique(grid.origins_px[:, 0]), :] = True
    lines[:, numpy.unique(grid.origins_px[:, 1])] = True
    overlay = tile_class_overlay(numpy.asarray(image.data, dtype=float), tile_map.class_image(), names, grid_lines=lines)
    legend = views.legend(names, counts)
    area = " · ".join(f"{name} {100 * fractions[name]:.1f} %" for name in names)
    unknown = f"; {counts['unknown']} unknown (untinted)" if counts["unknown"] else ""
    caption = f"{len(tile_map)} tiles of {grid.tile_px} px: {legend}{unknown}; area {area}"
    support_note = None if support is None else {"class_names": list(support.class_names), "counts": support.counts, "tile_px": support.tile_px,
                                                 "tile_nm": support.tile_nm, "backbone": support.backbone}
    # niondata keeps a colour image as B, G, R (the bytes of a little-endian BGRA pixel): swap, or Swift shows other colours than the legend says
    class_map = DataAndMetadata.new_data_and_metadata(
        numpy.ascontiguousarray(overlay[..., ::-1]), intensity_calibration=Calibration.Calibration(), dimensional_calibrations=image.dimensional_calibrations,
        metadata={"nion_autoem": {"legend": legend, "counts": counts, "area_fractions": fractions, "tile_px": grid.tile_px, "tile_nm": grid.tile_nm,
                                  "unknown_distance": tile_map.unknown_distance, "support": support_note}},
        data_descriptor=DataAndMetadata.DataDescriptor(False, 0, 2))
    rows = tuple((name, counts[name], round(fractions[name], 6)) for name in [*names, "unknown"])
    counts_xdata = DataAndMetadata.new_data_and_metadata(
        numpy.asarray([counts[name] for name in [*names, "unknown"]], dtype=float), intensity_calibration=Calibration.Calibration(units="tiles"),
        dimensional_calibrations=[Calibration.Calibration(units="class")], metadata={"nion_autoem": {"columns": list(COUNT_COLUMNS), "class_names": [*names, "unknown"]}})
    from nion_autoem_fewshot.classifier import ROW_COLUMNS

    classes_xdata = DataAndMetadata.new_data_and_metadata(grid.to_map(tile_map.classes.astype(float), size="grid"),
                                                          intensity_calibration=Calibration.Calibration(units="class"),
                                                          metadata={"nion_autoem": {"class_names": names, "unknown": -1, "columns": list(ROW_COLUMNS)}})
    return [Product(f"{key_prefix}tile_classes", "Tile classes (few-shot)", class_map, caption=caption),
            Product(f"{key_prefix}tile_counts", "Tile counts (few-shot)", counts_xdata, caption=f"tiles and area fraction per class: {legend}; area {area}",
                    table=views.Table(COUNT_COLUMNS, rows)),
            Product(f"{key_prefix}tiles", "Classified tiles (few-shot)", classes_xdata, caption=f"class of every tile ({', '.join(names)}; -1 unknown)",
                    table=views.Table(ROW_COLUMNS, tuple(tile_map.to_rows())))]


@dataclasses.dataclass(frozen=True)
class ClassifiedTiles:
    """What :func:`classify_tiles_in` found in a frame, with tile centres in the frame's scan-field nm."""

    tile_map: TileMap
    frame: ScanFrame

    def counts(self) -> dict[str, int]:
        return self.tile_map.counts()

    def area_fraction(self, class_name: str) -> float:
        """Fraction of the frame in one class."""
        return self.tile_map.area_fractions()[class_name]

    def centres_nm(self, class_name: str | None = None) -> list[tuple[float, float]]:
        """Scan-field (y, x) nm of every tile's centre, or of the tiles of one class, surest first."""
        centres = self.frame.pixel_to_nm(self.tile_map.grid.centres_px).reshape(-1, 2)
        if class_name is None:
            chosen = numpy.arange(len(self.tile_map))
        else:
            if class_name not in (*self.tile_map.class_names, "unknown"):
                raise ValueError(f"class_name must be one of {[*self.tile_map.class_names, 'unknown']}, got {class_name!r}")
            k = -1 if class_name == "unknown" else self.tile_map.class_names.index(class_name)
            chosen = numpy.flatnonzero(self.tile_map.classes == k)
            certainty = self.tile_map.probabilities[chosen].max(axis=1)
            chosen = chosen[numpy.argsort(-certainty, kind="stable")]
        return [(float(y), float(x)) for y, x in centres[chosen]]


def resolve_support(support: SupportSet | str | pathlib.Path) -> SupportSet:
    """A support set, or one loaded from the folder it was saved in."""
    from nion_autoem_fewshot.support import SupportSet

    if isinstance(support, SupportSet):
        return support
    if isinstance(support, (str, pathlib.Path)):
        return SupportSet.load(support)
    raise TypeError(f"support must be a SupportSet or the folder of a saved one, got {type(support).__name__}")


def classify_tiles_in(frame_measurement: Measurement, support: SupportSet | str | pathlib.Path, *, tile_px: int | None = None, tile_nm: float | None = None,
                      overlap: float = 0.0, features: Features = "combined", unknown_distance: float | None = None, smooth: Smooth = "auto",
                      key_prefix: str = "", publish: bool = True) -> SubPlan:
    """Sub-plan: classify the tiles of a surveyed frame with a support set, report and publish them; returns :class:`ClassifiedTiles`.

    Nothing is acquired.  The tile size defaults to the support set's (in nm
    when it has one: the frame's calibration gives the pixels).  Use it with
    ``yield from``::

        frame = yield Survey(ScanFrame((512, 512), 200.0))
        tiles = yield from classify_tiles_in(frame, "supports/particles")
        for position in tiles.centres_nm("triangles")[:5]:
            ...

    Raises
    ------
    ValueError
        If the measurement is not a survey, or the tile size, the support set
        or the frame are unfit (see :func:`nion_autoem_fewshot.classify_tiles`).
    """
    from nion_autoem_fewshot.classifier import classify_tiles

    if frame_measurement.frame is None:
        raise ValueError(f"classify_tiles_in needs a surveyed frame (a Survey's measurement), got a {frame_measurement.kind!r} measurement")
    frame = frame_measurement.frame
    chosen = resolve_support(support)
    origin = frame.pixel_to_nm((0.0, 0.0))
    tile_map = classify_tiles(numpy.asarray(frame_measurement.xdata.data, dtype=float), chosen, tile_px=tile_px, tile_nm=tile_nm,
                              pixel_size_nm=frame.pixel_size_nm, overlap=overlap, features=features, unknown_distance=unknown_distance,
                              smooth=smooth, origin_nm=(float(origin[0]), float(origin[1])))
    yield Report({"tiles": len(tile_map), "tile_px": tile_map.grid.tile_px, "tile_nm": tile_map.grid.tile_nm, "counts": tile_map.counts(),
                  "area_fractions": {k: round(v, 6) for k, v in tile_map.area_fractions().items()}, "features": features, "smooth": smooth,
                  "unknown_distance": tile_map.unknown_distance, "support_counts": chosen.counts})
    if publish:
        for product in tile_products(frame_measurement.xdata, tile_map, support=chosen, key_prefix=key_prefix):
            yield Publish(product)
    return ClassifiedTiles(tile_map, frame)


class TileClassification:
    """Survey ``frames`` frames and classify the tiles of each with a support set.

    Parameters
    ----------
    support : SupportSet or path
        The labelled examples, or the folder a support set was saved in.
    frames : int
        How many frames to take.
    survey_frame : ScanFrame or None
        Frame geometry; None keeps the current scan.
    pixel_time_us : float or None
        Pixel time of each frame.
    tile_px, tile_nm : optional
        Tile size; by default the support set's.
    overlap : float
        Fraction of a tile shared with its neighbour.
    features : ``"combined"``, ``"backbone"`` or ``"texture"``
        The shipped backbone and the texture baseline side by side (the default), or either alone.
    smooth : ``"auto"`` or float
        The neighbours' prior, its strength chosen by the frame's own map (``"auto"``, the default), or
        a fixed mixing weight with the neighbours' probabilities (0: every tile on its own).
    """

    name = "tile-classification"

    def __init__(self, support: SupportSet | str | pathlib.Path, *, frames: int = 1, survey_frame: ScanFrame | None = None, pixel_time_us: float | None = None,
                 tile_px: int | None = None, tile_nm: float | None = None, overlap: float = 0.0, features: Features = "combined",
                 smooth: Smooth = "auto") -> None:
        if frames < 1:
            raise ValueError(f"frames must be at least 1, got {frames}")
        if features not in ("combined", "backbone", "texture"):
            raise ValueError(f"features must be 'combined', 'backbone' or 'texture', got {features!r}")
        if not (smooth == "auto" or (isinstance(smooth, (int, float)) and 0.0 <= smooth <= 1.0)):
            raise ValueError(f"smooth must be 'auto' or a weight in [0, 1], got {smooth!r}")
        self.support_source = None if not isinstance(support, (str, pathlib.Path)) else str(support)
        self.support = resolve_support(support)
        self.support.check()
        self.frames = frames
        self.survey_frame = survey_frame
        self.pixel_time_us = pixel_time_us
        self.tile_px = tile_px
        self.tile_nm = tile_nm
        self.overlap = overlap
        self.features: Features = features
        self.smooth = smooth
        self.results: list[ClassifiedTiles] = []

    @property
    def model_version(self) -> str:
        backbone = {"backbone": self.support.backbone, "combined": f"{self.support.backbone}+texture"}.get(self.features, "texture")
        return f"fewshot/{backbone}+support r{self.support.revision} {self.support.counts}"

    @property
    def parameters(self) -> dict[str, typing.Any]:
        return {"support": self.support_source or {"counts": self.support.counts, "tile_px": self.support.tile_px, "tile_nm": self.support.tile_nm},
                "frames": self.frames, "survey_frame": self.survey_frame.to_dict() if self.survey_frame else None, "pixel_time_us": self.pixel_time_us,
                "tile_px": self.tile_px, "tile_nm": self.tile_nm, "overlap": self.overlap, "features": self.features, "smooth": self.smooth}

    def fraction_done(self) -> float | None:
        return len(self.results) / self.frames

    def messages(self) -> PlanGenerator:
        self.results = []
        found = None
        for index in range(self.frames):
            yield Checkpoint()
            frame = yield Survey(self.survey_frame, pixel_time_us=self.pixel_time_us, label=f"frame {index + 1}")
            found = yield from classify_tiles_in(frame, self.support, tile_px=self.tile_px, tile_nm=self.tile_nm, overlap=self.overlap, features=self.features,
                                             smooth=self.smooth)
            self.results.append(found)
            yield Report(fraction=self.fraction_done(), model_version=self.model_version)
        assert found is not None
        counts = ", ".join(f"{n} {name}" for name, n in found.counts().items() if n)
        return f"{len(found.tile_map)} tiles in the last of {self.frames} frame(s): {counts or 'none'}"
