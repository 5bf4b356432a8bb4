from __future__ import annotations

import numpy
import numpy.typing
import pytest

from nion_autoem_elit import atoms

NAMES = ("background", "Mo", "S2", "S1")


def _probability_maps(centres: list[tuple[float, float]], classes: list[int], members: int = 3) -> numpy.typing.NDArray[numpy.float64]:
    """Member probability maps with a soft Gaussian blob of the given class at each centre."""
    shape = (64, 64)
    rr, cc = numpy.mgrid[0 : shape[0], 0 : shape[1]]
    p = numpy.zeros((members, len(NAMES)) + shape)
    for (r, c), k in zip(centres, classes):
        blob = numpy.exp(-((rr - r) ** 2 + (cc - c) ** 2) / (2 * 2.0**2))
        p[:, k] += blob
    p[:, 0] = numpy.clip(1.0 - p[:, 1:].sum(axis=1), 0.0, 1.0)
    normalised: numpy.typing.NDArray[numpy.float64] = p / p.sum(axis=1, keepdims=True)
    return normalised


def test_sub_pixel_positions_and_classes() -> None:
    centres = [(10.3, 12.7), (30.55, 40.2), (50.9, 20.45)]
    p = _probability_maps(centres, [1, 2, 3])
    result = atoms.extract_atoms(p, NAMES)
    assert len(result) == 3
    order = numpy.argsort(result.positions[:, 0])
    numpy.testing.assert_allclose(result.positions[order], centres, atol=0.05)
    assert result.labels == [NAMES[k] for k in result.classes]
    assert sorted(result.labels) == ["Mo", "S1", "S2"]
    assert numpy.all(result.class_disagreement == 0.0)
    assert numpy.all(result.position_spread_px < 1e-6)
    assert result.mean_probabilities.shape == result.variance.shape == (4, 64, 64)
    assert result.counts() == {"Mo": 1, "S2": 1, "S1": 1}


def test_member_disagreement_and_spread_raise_uncertainty() -> None:
    agree = _probability_maps([(20.0, 20.0)], [2])
    disagree = agree.copy()
    disagree[0] = _probability_maps([(21.5, 20.0)], [3], members=1)[0]  # one member: shifted, other class
    calm = atoms.extract_atoms(agree, NAMES)
    doubtful = atoms.extract_atoms(disagree, NAMES)
    assert calm.classes.tolist() == doubtful.classes.tolist() == [2]
    assert doubtful.class_disagreement[0] == pytest.approx(1.0 / 3.0)
    assert doubtful.position_spread_px[0] > 0.1
    assert doubtful.uncertainties[0] > calm.uncertainties[0]
    assert doubtful.variance[3].max() > 0.05


def test_touching_columns_are_split() -> None:
    many = [(10.0 + 12 * i, 10.0 + 12 * j) for i in range(4) for j in range(4)]
    touching = many + [(10.0, 16.5)]  # squeezed between two columns
    result = atoms.extract_atoms(_probability_maps(touching, [1] * len(touching)), NAMES, threshold=0.3)
    assert len(result) == len(touching)


def test_empty_frame_gives_no_atoms() -> None:
    p = numpy.zeros((2, 4, 32, 32))
    p[:, 0] = 1.0
    result = atoms.extract_atoms(p, NAMES)
    assert len(result) == 0 and result.positions.shape == (0, 2)


def test_bad_probability_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="members, classes, rows, cols"):
        atoms.extract_atoms(numpy.zeros((4, 32, 32)), NAMES)
    with pytest.raises(ValueError, match="class names"):
        atoms.extract_atoms(numpy.zeros((1, 3, 32, 32)), NAMES)
