from __future__ import annotations

import numpy
import pytest

from nion_autoem_dkl.candidates import extract_patches


def test_grid_shapes_and_centres() -> None:
    image = numpy.arange(40 * 50, dtype=float).reshape(40, 50)
    c = extract_patches(image, 8, stride=4, normalization="none")
    assert c.patches.shape == (9 * 11, 8, 8)
    assert c.positions.shape == (99, 2)
    # The centre pixel of each patch is the pixel at index (4, 4) inside it.
    for patch, (row, col) in zip(c.patches[[0, 57, 98]], c.positions[[0, 57, 98]]):
        assert patch[4, 4] == image[int(row), int(col)]


def test_given_positions_are_kept() -> None:
    image = numpy.random.default_rng(0).normal(size=(32, 32))
    positions = numpy.array([[8.0, 8.0], [20.2, 15.7]])
    c = extract_patches(image, 16, positions=positions, normalization="none")
    assert c.patches.shape == (2, 16, 16)
    numpy.testing.assert_array_equal(c.positions, [[8, 8], [20, 16]])
    assert c.patches[1][8, 8] == image[20, 16]


def test_normalizations() -> None:
    image = numpy.random.default_rng(1).normal(3.0, 2.0, size=(32, 32))
    per_patch = extract_patches(image, 8, stride=8, normalization="patch").patches
    numpy.testing.assert_allclose(per_patch.mean(axis=(1, 2)), 0.0, atol=1e-12)
    numpy.testing.assert_allclose(per_patch.std(axis=(1, 2)), 1.0, atol=1e-12)
    whole = extract_patches(image, 8, stride=8, normalization="global").patches
    raw = extract_patches(image, 8, stride=8, normalization="none").patches
    numpy.testing.assert_allclose(whole, (raw - image.mean()) / image.std())


@pytest.mark.parametrize(
    ("image", "kwargs", "message"),
    [
        (numpy.zeros((2, 16, 16)), {}, "2D array"),
        (numpy.zeros(16), {}, "2D array"),
        (numpy.full((16, 16), numpy.nan), {}, "NaN"),
        (numpy.zeros((16, 16)), {"patch_size": 32}, "larger than the survey"),
        (numpy.zeros((16, 16)), {"stride": 0}, "stride"),
        (numpy.zeros((16, 16)), {"normalization": "zscore"}, "normalization must be one of"),
        (numpy.zeros((32, 32)), {"positions": numpy.array([[2.0, 16.0]])}, "too close to the image edge"),
        (numpy.zeros((32, 32)), {"positions": numpy.array([1.0, 2.0])}, r"shape \(K, 2\)"),
    ],
)
def test_errors_name_the_problem(image: numpy.ndarray, kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"patch_size": 8}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        extract_patches(image, **arguments)  # type: ignore[arg-type]
