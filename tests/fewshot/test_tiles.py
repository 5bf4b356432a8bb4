"""Tiles: every pixel in exactly one tile's share, positions in px and nm, and the sizes a picker can ask for."""

from __future__ import annotations

import numpy
import pytest

from nion_autoem_fewshot.tiles import cut_tiles


def test_tiles_cover_an_image_that_is_not_a_whole_number_of_tiles() -> None:
    image = numpy.arange(70 * 100, dtype=float).reshape(70, 100)
    grid = cut_tiles(image, tile_px=32)
    # 70 = 32 + 32 + 6: the last row of tiles is moved in to touch the bottom edge, so the map is never smaller than the image
    assert grid.shape == (3, 4) and len(grid) == 12 and grid.tiles.shape == (12, 32, 32)
    assert grid.origins_px[:, 0].max() == 70 - 32 and grid.origins_px[:, 1].max() == 100 - 32
    for index, (r, c) in enumerate(grid.origins_px):
        assert numpy.array_equal(grid.tiles[index], image[r:r + 32, c:c + 32])
    owner = grid.to_map(numpy.arange(len(grid)))
    assert owner.shape == image.shape
    assert owner[69, 99] == 11 and owner[0, 0] == 0
    # every pixel's tile contains it, and index_at agrees with the map
    for y, x in [(0, 0), (31, 31), (32, 32), (50, 65), (69, 99), (40, 70)]:
        index = grid.index_at(y, x)
        r, c = grid.origins_px[index]
        assert r <= y < r + 32 and c <= x < c + 32 and owner[y, x] == index
    assert grid.pixel_weights().sum() == 70 * 100


def test_overlap_and_nm_positions() -> None:
    grid = cut_tiles(numpy.zeros((128, 128)), tile_nm=3.2, pixel_size_nm=0.1, overlap=0.5, origin_nm=(-6.4, 1.0))
    assert grid.tile_px == 32 and grid.shape == (7, 7) and grid.tile_nm == pytest.approx(3.2)
    assert numpy.allclose(numpy.diff(numpy.unique(grid.origins_px[:, 1])), 16)
    assert grid.centres_nm is not None
    assert numpy.allclose(grid.centres_nm[0], [-6.4 + 1.55, 1.0 + 1.55])
    assert grid.to_map(numpy.arange(len(grid)), size="grid").shape == (7, 7)
    # with overlap a pixel belongs to the tile whose centre is nearest
    assert grid.index_at(20, 20) == 0 and grid.index_at(28, 28) == 1 * 7 + 1  # centres at 15.5 and 31.5 px


@pytest.mark.parametrize("kwargs, message", [
    ({"tile_nm": 2.0}, "the image needs a calibration in nm (pass pixel_size_nm), or give the tile size in px"),
    ({"tile_px": 80}, "do not fit in an image of 64 x 64 px; choose a tile at most 64 px"),
    ({"tile_px": 16, "overlap": 1.0}, "overlap must be a fraction in [0, 1)"),
    ({}, "give a tile size: tile_px (pixels) or tile_nm"),
    ({"tile_px": 16, "tile_nm": 2.0, "pixel_size_nm": 0.1}, "not both"),
])
def test_bad_tile_sizes_say_what_would_be_right(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as error:
        cut_tiles(numpy.zeros((64, 64)), **kwargs)  # type: ignore[arg-type]
    assert message in str(error.value)


def test_a_non_image_is_refused() -> None:
    with pytest.raises(ValueError, match="image must be 2D"):
        cut_tiles(numpy.zeros((4, 64, 64)), tile_px=16)
    with pytest.raises(ValueError, match="NaN"):
        cut_tiles(numpy.full((64, 64), numpy.nan), tile_px=16)
    with pytest.raises(ValueError, match="outside the image"):
        cut_tiles(numpy.zeros((64, 64)), tile_px=16).index_at(64, 0)
