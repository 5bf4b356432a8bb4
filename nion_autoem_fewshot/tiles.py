"""Cut an image into square tiles that remember where they came from.

A :class:`TileGrid` holds the tiles (n, t, t), their top-left pixels, their
centres in pixels and in nm, and answers the two questions a picker asks:
which tile is under this pixel (:meth:`TileGrid.index_at`) and what does a
per-tile answer look like as a map (:meth:`TileGrid.to_map`).

Tiles step by ``tile_px * (1 - overlap)``; when the image is not a whole
number of steps, the last row and column of tiles are moved in to touch the
image's edge, so every pixel belongs to a tile and a map is never smaller
than its image.  A pixel covered by several tiles belongs to the one whose
centre is nearest.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy
import numpy.typing

_NDArray = numpy.typing.NDArray[typing.Any]

#: Smallest tile :func:`cut_tiles` makes (the backbone needs more, see :data:`nion_autoem_fewshot.backbone.MIN_TILE_PX`).
MIN_CUT_PX = 2


@dataclasses.dataclass(frozen=True, eq=False)
class TileGrid:
    """Tiles of one image and where they lie.

    Parameters
    ----------
    tiles : ndarray of float32, shape (n, tile_px, tile_px)
        The tiles, row by row.
    origins_px : ndarray of int, shape (n, 2)
        Top-left (row, col) pixel of every tile.
    tile_px : int
        Side of a tile in pixels.
    image_shape : (rows, cols)
        Shape of the image the tiles were cut from.
    shape : (rows, cols)
        How many tiles down and across.
    pixel_size_nm : float or None
        The image's pixel size; None for an uncalibrated image.
    origin_nm : (y, x)
        Position of the image's first pixel centre in nm (its calibration offsets).
    overlap : float
        Fraction of a tile shared with its neighbour.
    """

    tiles: _NDArray
    origins_px: _NDArray
    tile_px: int
    image_shape: tuple[int, int]
    shape: tuple[int, int]
    pixel_size_nm: float | None = None
    origin_nm: tuple[float, float] = (0.0, 0.0)
    overlap: float = 0.0
    # for every pixel row (column), the tile row (column) it belongs to
    _row_of_pixel: _NDArray = dataclasses.field(init=False, repr=False)
    _col_of_pixel: _NDArray = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        rows = _nearest_start(self.image_shape[0], numpy.unique(self.origins_px[:, 0]), self.tile_px)
        cols = _nearest_start(self.image_shape[1], numpy.unique(self.origins_px[:, 1]), self.tile_px)
        object.__setattr__(self, "_row_of_pixel", rows)
        object.__setattr__(self, "_col_of_pixel", cols)

    def __len__(self) -> int:
        return len(self.tiles)

    @property
    def tile_nm(self) -> float | None:
        """Side of a tile in nm, or None for an uncalibrated image."""
        return None if self.pixel_size_nm is None else self.tile_px * self.pixel_size_nm

    @property
    def centres_px(self) -> _NDArray:
        """(row, col) of every tile's centre, in (sub-)pixels, shape (n, 2)."""
        return typing.cast(_NDArray, self.origins_px + (self.tile_px - 1) / 2)

    @property
    def centres_nm(self) -> _NDArray | None:
        """(y, x) of every tile's centre in nm from the image's calibration, shape (n, 2); None without a calibration."""
        if self.pixel_size_nm is None:
            return None
        return numpy.asarray(self.origin_nm) + self.centres_px * self.pixel_size_nm

    def index_at(self, y_px: float, x_px: float) -> int:
        """The tile a pixel belongs to (the one whose centre is nearest, when tiles overlap).

        Examples
        --------
        >>> grid = cut_tiles(numpy.zeros((64, 96)), tile_px=32)
        >>> grid.shape, grid.index_at(0, 0), grid.index_at(40, 70)
        ((2, 3), 0, 5)
        """
        row, col = int(math.floor(y_px)), int(math.floor(x_px))
        if not (0 <= row < self.image_shape[0] and 0 <= col < self.image_shape[1]):
            raise ValueError(f"pixel ({y_px}, {x_px}) is outside the image of shape {self.image_shape}")
        rows, cols = self._row_of_pixel, self._col_of_pixel
        return int(rows[row] * self.shape[1] + cols[col])

    def to_map(self, values: numpy.typing.ArrayLike, *, size: typing.Literal["image", "grid"] = "image") -> _NDArray:
        """Per-tile values as an image-sized map (every pixel takes its tile's value) or a grid-sized one.

        Parameters
        ----------
        values : array, shape (n, ...)
            One value (or vector) per tile.
        size : ``"image"`` or ``"grid"``
            ``"image"``: shape (rows, cols, ...) of the image; ``"grid"``: (tile rows, tile cols, ...).

        Examples
        --------
        >>> grid = cut_tiles(numpy.zeros((4, 6)), tile_px=2)
        >>> grid.to_map(numpy.arange(6), size="grid").tolist()
        [[0, 1, 2], [3, 4, 5]]
        >>> grid.to_map(numpy.arange(6))[:, :3].tolist()
        [[0, 0, 1], [0, 0, 1], [3, 3, 4], [3, 3, 4]]
        """
        values = numpy.asarray(values)
        if values.shape[:1] != (len(self),):
            raise ValueError(f"values must have one entry per tile ({len(self)}), got shape {values.shape}")
        if size == "grid":
            return values.reshape(self.shape + values.shape[1:])
        if size != "image":
            raise ValueError(f"size must be 'image' or 'grid', got {size!r}")
        rows, cols = self._row_of_pixel, self._col_of_pixel
        return typing.cast(_NDArray, values[rows[:, None] * self.shape[1] + cols[None, :]])

    def pixel_weights(self) -> _NDArray:
        """How many image pixels each tile stands for in :meth:`to_map` (for area fractions with overlap), shape (n,)."""
        rows, cols = self._row_of_pixel, self._col_of_pixel
        return typing.cast(_NDArray, numpy.outer(numpy.bincount(rows, minlength=self.shape[0]), numpy.bincount(cols, minlength=self.shape[1])).ravel())


def _starts(length: int, tile_px: int, step: int) -> _NDArray:
    """Tile starts along one axis: every ``step`` px, the last moved in to touch the edge."""
    starts = list(range(0, length - tile_px + 1, step))
    if starts[-1] + tile_px < length:
        starts.append(length - tile_px)
    return numpy.asarray(starts, dtype=int)


def _nearest_start(length: int, starts: _NDArray, tile_px: int) -> _NDArray:
    """For every pixel along an axis, the index of the tile whose centre is nearest."""
    centres = starts + (tile_px - 1) / 2
    pixels = numpy.arange(length)
    return typing.cast(_NDArray, numpy.argmin(numpy.abs(pixels[:, None] - centres[None, :]), axis=1))


def tile_size_px(*, tile_px: int | None = None, tile_nm: float | None = None, pixel_size_nm: float | None = None) -> int:
    """The tile side in pixels from a size in pixels or in nm (which needs the image's pixel size).

    Examples
    --------
    >>> tile_size_px(tile_nm=2.0, pixel_size_nm=0.05)
    40
    >>> tile_size_px(tile_nm=2.0)
    Traceback (most recent call last):
    ...
    ValueError: tile_nm=2.0 needs the image's pixel size in nm: the image needs a calibration in nm (pass pixel_size_nm), or give the tile size in px (tile_px)
    """
    if tile_px is not None and tile_nm is not None:
        raise ValueError(f"give the tile size once, as tile_px or as tile_nm, not both (got tile_px={tile_px}, tile_nm={tile_nm})")
    if tile_px is None and tile_nm is None:
        raise ValueError("give a tile size: tile_px (pixels) or tile_nm (nm, for a calibrated image)")
    if tile_nm is not None:
        if not (isinstance(tile_nm, (int, float)) and math.isfinite(tile_nm) and tile_nm > 0):
            raise ValueError(f"tile_nm must be a positive number of nm, got {tile_nm!r}")
        if pixel_size_nm is None:
            raise ValueError(f"tile_nm={tile_nm} needs the image's pixel size in nm: the image needs a calibration in nm (pass pixel_size_nm), "
                             "or give the tile size in px (tile_px)")
        if not (math.isfinite(pixel_size_nm) and pixel_size_nm > 0):
            raise ValueError(f"pixel_size_nm must be a positive number of nm, got {pixel_size_nm!r}")
        return max(1, int(round(tile_nm / pixel_size_nm)))
    if isinstance(tile_px, bool) or not isinstance(tile_px, (int, numpy.integer)):
        raise ValueError(f"tile_px must be a whole number of pixels, got {tile_px!r}")
    return int(tile_px)


def cut_tiles(image: numpy.typing.ArrayLike, *, tile_px: int | None = None, tile_nm: float | None = None, pixel_size_nm: float | None = None,
              overlap: float = 0.0, origin_nm: tuple[float, float] = (0.0, 0.0)) -> TileGrid:
    """Cut a 2D image into square tiles of ``tile_px`` pixels or ``tile_nm`` nm.

    Parameters
    ----------
    image : array, shape (rows, cols)
        The frame (any size at least one tile).
    tile_px : int, optional
        Tile side in pixels.
    tile_nm : float, optional
        Tile side in nm; needs ``pixel_size_nm``.
    pixel_size_nm : float, optional
        The image's calibration; gives every tile a centre in nm.
    overlap : float
        Fraction of a tile shared with the next, in [0, 1).
    origin_nm : (y, x)
        Position of the first pixel's centre in nm (the calibration offsets).

    Returns
    -------
    TileGrid

    Raises
    ------
    ValueError
        For a tile size in nm without a pixel size, a tile larger than the image,
        an overlap outside [0, 1), or an image that is not 2D and finite.

    Examples
    --------
    >>> grid = cut_tiles(numpy.arange(100.0).reshape(10, 10), tile_px=4)
    >>> grid.shape, grid.origins_px[:, 1].tolist()[:3]
    ((3, 3), [0, 4, 6])
    >>> grid = cut_tiles(numpy.zeros((64, 64)), tile_nm=1.6, pixel_size_nm=0.05, overlap=0.5)
    >>> grid.tile_px, grid.shape, grid.centres_nm[0].tolist()
    (32, (3, 3), [0.775, 0.775])
    """
    array = numpy.asarray(image)
    if array.ndim != 2:
        raise ValueError(f"image must be 2D (rows, cols), got shape {array.shape}; choose one channel or frame")
    if not numpy.issubdtype(array.dtype, numpy.number) or numpy.iscomplexobj(array):
        raise ValueError(f"image must hold real numbers, got dtype {array.dtype}")
    if not numpy.all(numpy.isfinite(array)):
        raise ValueError("image contains NaN or infinite values; replace them (e.g. numpy.nan_to_num) before cutting tiles")
    size = tile_size_px(tile_px=tile_px, tile_nm=tile_nm, pixel_size_nm=pixel_size_nm)
    if size < MIN_CUT_PX:
        raise ValueError(f"tiles must be at least {MIN_CUT_PX} px on a side, got {size} px")
    if size > min(array.shape):
        raise ValueError(f"tiles of {size} px do not fit in an image of {array.shape[0]} x {array.shape[1]} px; choose a tile at most {min(array.shape)} px")
    if not (isinstance(overlap, (int, float)) and 0.0 <= overlap < 1.0):
        raise ValueError(f"overlap must be a fraction in [0, 1), got {overlap!r}")
    step = max(1, int(round(size * (1.0 - overlap))))
    rows, cols = _starts(array.shape[0], size, step), _starts(array.shape[1], size, step)
    windows = numpy.lib.stride_tricks.sliding_window_view(array, (size, size))
    tiles = numpy.ascontiguousarray(windows[rows[:, None], cols[None, :]].reshape(-1, size, size), dtype=numpy.float32)
    origins = numpy.stack(numpy.meshgrid(rows, cols, indexing="ij"), axis=-1).reshape(-1, 2)
    return TileGrid(tiles, origins, size, (int(array.shape[0]), int(array.shape[1])), (len(rows), len(cols)),
                    None if pixel_size_nm is None else float(pixel_size_nm), (float(origin_nm[0]), float(origin_nm[1])), float(overlap))
