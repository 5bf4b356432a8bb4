"""Results a person can read at a glance: class maps with a legend, tables as CSV.

Hundreds of point graphics freeze Swift (its Inspector builds a section per
graphic), so thousands of atom columns are shown as *data*: a colour overlay
of the frame with one colour per class, and a legend that says which colour
is which and how many there are.  Tables (atoms, targeting events) are kept
as named columns with words, not codes, and written as CSV next to the
journal.  Pure numpy: the Swift glue only puts these on screen.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import typing

import numpy
import numpy.typing

_NDArray = numpy.typing.NDArray[typing.Any]

#: Colours a microscopist can tell apart on a grey frame (RGB, 0-255), by class name; others cycle through SPARE_COLOURS.
CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "Mo": (64, 140, 255), "W": (150, 90, 255), "S2": (255, 210, 40), "S1": (255, 60, 60), "Se": (60, 220, 120), "empty": (255, 255, 255),
    "C": (64, 200, 255), "vacancy": (255, 60, 60), "dopant": (60, 220, 120),
}
SPARE_COLOURS: tuple[tuple[int, int, int], ...] = ((255, 140, 0), (200, 0, 200), (0, 200, 200), (160, 160, 0))
COLOUR_NAMES: dict[tuple[int, int, int], str] = {
    (64, 140, 255): "blue", (150, 90, 255): "violet", (255, 210, 40): "yellow", (255, 60, 60): "red", (60, 220, 120): "green",
    (255, 255, 255): "white", (64, 200, 255): "cyan", (255, 140, 0): "orange", (200, 0, 200): "magenta", (0, 200, 200): "teal", (160, 160, 0): "olive",
}


def class_colours(class_names: typing.Sequence[str]) -> list[tuple[int, int, int]]:
    """One colour per class, the same colour for the same name in every map.

    Examples
    --------
    >>> class_colours(["Mo", "S2", "odd"])
    [(64, 140, 255), (255, 210, 40), (255, 140, 0)]
    """
    spare = iter(SPARE_COLOURS * (1 + len(class_names) // len(SPARE_COLOURS)))
    return [CLASS_COLOURS.get(name) or next(spare) for name in class_names]


def class_overlay(image: _NDArray, positions_px: _NDArray, classes: _NDArray, class_names: typing.Sequence[str], *, radius_px: float | None = None,
                  ringed: typing.Sequence[int] = ()) -> _NDArray:
    """The frame in grey with a coloured disc on every column, one colour per class, as an RGB image.

    Columns listed in ``ringed`` (the uncertain ones) also get a white ring, so
    they stand out without one Swift graphic per column.

    Parameters
    ----------
    image : ndarray, shape (rows, cols)
        The frame the columns were found in.
    positions_px : ndarray, shape (n, 2)
        (row, col) of each column, sub-pixel.
    classes : ndarray of int, shape (n,)
        Index into ``class_names`` for each column.
    class_names : sequence of str
        Names of the classes.
    radius_px : float, optional
        Disc radius; default a quarter of the median nearest-neighbour distance (at least 1 px), so the frame shows between the discs.
    ringed : sequence of int
        Indices of columns to ring in white (twice the disc radius).

    Returns
    -------
    ndarray of uint8, shape (rows, cols, 3)

    Examples
    --------
    >>> rgb = class_overlay(numpy.zeros((16, 16)), numpy.array([[4.0, 4.0], [10.0, 12.0]]), numpy.array([0, 1]), ["Mo", "S2"], radius_px=1)
    >>> rgb.shape, rgb[4, 4].tolist(), rgb[10, 12].tolist(), rgb[0, 0].tolist()
    ((16, 16, 3), [64, 140, 255], [255, 210, 40], [0, 0, 0])
    >>> ringed = class_overlay(numpy.zeros((16, 16)), numpy.array([[8.0, 8.0]]), numpy.array([0]), ["Mo"], radius_px=1, ringed=[0])
    >>> ringed[8, 8].tolist(), ringed[8, 10].tolist(), ringed[8, 12].tolist()
    ([64, 140, 255], [255, 255, 255], [0, 0, 0])
    """
    image = numpy.asarray(image, dtype=float)
    if image.ndim != 2:
        raise ValueError(f"image must be 2D (rows, cols), got shape {image.shape}")
    positions_px = numpy.asarray(positions_px, dtype=float).reshape(-1, 2)
    classes = numpy.asarray(classes, dtype=int).reshape(-1)
    if len(positions_px) != len(classes):
        raise ValueError(f"need one class per position, got {len(positions_px)} positions and {len(classes)} classes")
    if len(classes) and (classes.min() < 0 or classes.max() >= len(class_names)):
        raise ValueError(f"classes must index class_names (0..{len(class_names) - 1}), got values {classes.min()}..{classes.max()}")
    low, high = numpy.percentile(image, (1, 99.5)) if image.size else (0.0, 1.0)
    grey = numpy.clip((image - low) / (high - low if high > low else 1.0), 0.0, 1.0) * 200
    rgb = numpy.repeat(grey[..., numpy.newaxis], 3, axis=2).astype(numpy.uint8)
    if not len(classes):
        return rgb
    if radius_px is None:
        radius_px = max(1.0, _nearest_neighbour_px(positions_px) / 4)
    centres = numpy.round(positions_px).astype(int)
    to_ring = numpy.asarray(ringed, dtype=int).reshape(-1)
    if len(to_ring) and (to_ring.min() < 0 or to_ring.max() >= len(centres)):
        raise ValueError(f"ringed must index the columns (0..{len(centres) - 1}), got values {to_ring.min()}..{to_ring.max()}")
    ring = _offsets(2 * radius_px, 2 * radius_px - 1.0)
    _paint(rgb, centres[to_ring], ring, numpy.full((len(to_ring), 3), 255, dtype=numpy.uint8))
    _paint(rgb, centres, _offsets(radius_px), numpy.asarray(class_colours(class_names), dtype=numpy.uint8)[classes])
    return rgb


def _offsets(outer: float, inner: float = -1.0) -> _NDArray:
    """Pixel offsets with inner < distance <= outer from a centre (a disc, or a ring)."""
    r = int(math.ceil(outer))
    dy, dx = numpy.mgrid[-r:r + 1, -r:r + 1]
    distance_squared = dy**2 + dx**2
    inside = (distance_squared <= outer**2 + 1e-9) & (distance_squared > inner**2 if inner >= 0 else True)
    return numpy.stack([dy[inside], dx[inside]], axis=1)


def _paint(rgb: _NDArray, centres: _NDArray, offsets: _NDArray, colours: _NDArray) -> None:
    """Paint ``offsets`` around each centre in that centre's colour, clipped to the image."""
    pixels = (centres[:, numpy.newaxis, :] + offsets[numpy.newaxis, :, :]).reshape(-1, 2)
    colour = numpy.repeat(colours, len(offsets), axis=0)
    keep = (pixels[:, 0] >= 0) & (pixels[:, 0] < rgb.shape[0]) & (pixels[:, 1] >= 0) & (pixels[:, 1] < rgb.shape[1])
    rgb[pixels[keep, 0], pixels[keep, 1]] = colour[keep]


def _nearest_neighbour_px(positions: _NDArray) -> float:
    if len(positions) < 2:
        return 6.0
    sample = positions[:: max(1, len(positions) // 400)]
    distances = numpy.linalg.norm(sample[:, numpy.newaxis, :] - positions[numpy.newaxis, :, :], axis=2)
    distances[distances == 0] = numpy.inf
    return float(numpy.median(distances.min(axis=1)))


def legend(class_names: typing.Sequence[str], counts: typing.Mapping[str, int]) -> str:
    """Which colour is which class and how many there are, in words.

    Examples
    --------
    >>> legend(["background", "Mo", "S2", "S1"], {"Mo": 812, "S2": 1590, "S1": 11})
    'Mo blue 812 · S2 yellow 1590 · S1 red 11'
    """
    return " · ".join(f"{name} {COLOUR_NAMES.get(colour, 'coloured')} {counts.get(name, 0)}"
                      for name, colour in zip(class_names, class_colours(class_names), strict=True) if name != "background")


@dataclasses.dataclass(frozen=True)
class Table:
    """Named columns of rows, in words a person reads (outcome names, class names), exportable as CSV.

    Examples
    --------
    >>> t = Table(("target", "outcome"), ((1, "transformed"), (2, "no event")))
    >>> print(t.to_csv(), end="")
    target,outcome
    1,transformed
    2,no event
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[typing.Any, ...], ...]

    def __post_init__(self) -> None:
        for index, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(f"row {index} has {len(row)} values but the table has {len(self.columns)} columns {self.columns}")

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows([["" if value is None or (isinstance(value, float) and not math.isfinite(value)) else _format(value) for value in row]
                          for row in self.rows])
        return out.getvalue()


def _format(value: typing.Any) -> typing.Any:
    if isinstance(value, (float, numpy.floating)):
        return f"{float(value):.6g}"
    return value
