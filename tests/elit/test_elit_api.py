from __future__ import annotations

import numpy
import pytest

from nion_autoem_elit import evaluation
from nion_autoem_elit import find_atoms
from nion_autoem_elit import lattices
from nion_autoem_elit import synthetic

REALISTIC = synthetic.ImagingConditions()


def test_find_atoms_on_simulated_mos2_with_packaged_model() -> None:
    spec = lattices.mos2_lattice(s1_concentration=(0.08, 0.08))
    frames = [synthetic.generate_frame(spec, (256, 256), seed=100 + i, conditions=REALISTIC) for i in range(2)]

    def find(image: numpy.ndarray) -> tuple[numpy.ndarray, numpy.ndarray]:
        result = find_atoms(image)
        return result.positions, result.classes

    scores = evaluation.evaluate_finder(find, frames, spec.class_names)
    assert scores["f1"] >= 0.97
    assert scores["rmse_px"] < 0.5
    assert scores["S1_count"] >= 10
    assert scores["S1_recall"] >= 0.8
    assert scores["S1_precision"] >= 0.8


def test_result_fields_are_consistent() -> None:
    frame = synthetic.generate_frame(lattices.mos2_lattice(), (128, 128), seed=5, conditions=REALISTIC)
    result = find_atoms(frame.image)
    n = len(result)
    assert n > 20
    assert result.positions.shape == (n, 2)
    assert result.class_distributions.shape == (n, 4)
    assert numpy.all((result.uncertainties >= 0) & (result.uncertainties <= 1))
    assert numpy.all((result.class_probabilities >= 0) & (result.class_probabilities <= 1))
    assert result.mean_probabilities.shape == result.variance.shape == (5, 128, 128)
    assert sum(result.counts().values()) == n


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (numpy.zeros((4, 64, 64)), "must be 2D"),
        (numpy.zeros((64, 64, 3)), "one channel"),
        (numpy.zeros((16, 64)), "at least 32x32"),
        (numpy.full((64, 64), numpy.nan), "NaN or infinite"),
        (numpy.ones((64, 64)), "constant"),
        ("not an image", "2D numeric array"),
    ],
)
def test_bad_frames_are_rejected_with_a_reason(image: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        find_atoms(image)  # type: ignore[arg-type]


def test_bad_threshold_and_ensemble_are_rejected() -> None:
    image = numpy.random.default_rng(0).random((64, 64))
    with pytest.raises(ValueError, match="threshold"):
        find_atoms(image, threshold=1.5)
    with pytest.raises(ValueError, match="ensemble must be"):
        find_atoms(image, ensemble=42)  # type: ignore[arg-type]


def test_packaged_graphene_model_finds_carbon_and_silicon() -> None:
    spec = lattices.graphene_lattice(si_concentration=(0.03, 0.03))
    conditions = synthetic.ImagingConditions(dose_e_per_A2=4.0e6, pixel_size_A=0.09)
    frames = [synthetic.generate_frame(spec, (256, 256), seed=300 + i, conditions=conditions) for i in range(2)]

    def find(image: numpy.ndarray) -> tuple[numpy.ndarray, numpy.ndarray]:
        result = find_atoms(image, "graphene")
        return result.positions, result.classes

    scores = evaluation.evaluate_finder(find, frames, spec.class_names)
    assert scores["f1"] >= 0.97
    assert scores["Si_count"] >= 5 and scores["Si_recall"] >= 0.8
