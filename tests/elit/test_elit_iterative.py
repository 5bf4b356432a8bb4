from __future__ import annotations

import numpy
import torch

from nion_autoem_elit import atoms
from nion_autoem_elit import iterative
from nion_autoem_elit import lattices
from nion_autoem_elit import storage
from nion_autoem_elit import synthetic
from nion_autoem_elit import training


def _result(classes: list[int], uncertainties: list[float]) -> atoms.AtomFindingResult:
    n = len(classes)
    rng = numpy.random.default_rng(0)
    return atoms.AtomFindingResult(
        positions=rng.uniform(10, 50, size=(n, 2)),
        classes=numpy.array(classes),
        class_names=("background", "Mo", "S2", "S1"),
        class_probabilities=1.0 - numpy.array(uncertainties),
        class_distributions=numpy.full((n, 3), 1.0 / 3.0),
        class_disagreement=numpy.zeros(n),
        position_spread_px=numpy.zeros(n),
        uncertainties=numpy.array(uncertainties),
        mean_probabilities=numpy.zeros((4, 64, 64)),
        variance=numpy.zeros((4, 64, 64)),
    )


def test_per_class_quota_keeps_rare_uncertain_classes() -> None:
    # 100 confident host columns and 6 vacancies that are all fairly uncertain.
    classes = [1] * 100 + [3] * 6
    uncertainties = list(numpy.linspace(0.01, 0.2, 100)) + [0.55, 0.6, 0.65, 0.7, 0.8, 0.9]
    result = _result(classes, uncertainties)
    config = iterative.IterationConfig(keep_fraction=0.8, max_uncertainty=0.5, min_per_class=3)
    selected = iterative.select_pseudo_labels(result, config)
    global_cut = numpy.array(uncertainties) <= 0.5
    assert not global_cut[100:].any()  # a single threshold would lose every vacancy
    assert selected[100:].sum() == 3  # the quota keeps the three most certain vacancies
    assert selected[100:103].all()
    assert selected[:100].sum() == 80  # the host keeps its most certain 80 %
    assert selected[:80].all() and not selected[80:100].any()


def test_pseudo_label_mask_ignores_unselected_columns() -> None:
    result = _result([1, 2], [0.1, 0.9])
    result.positions[:] = [[20.0, 20.0], [40.0, 40.0]]
    result.mean_probabilities[0] = 1.0
    mask = iterative.pseudo_label_mask(result, numpy.array([True, False]), radius_px=3.0, background_confidence=0.9)
    assert mask[20, 20] == 1
    assert mask[40, 40] == training.IGNORE_LABEL
    assert mask[20, 24] == training.IGNORE_LABEL  # the rim is ambiguous
    assert mask[5, 5] == 0


def test_elit_iteration_runs_and_reports_changes_without_touching_the_input() -> None:
    ens = storage.load_ensemble("mos2")
    before_weights = {k: v.clone() for k, v in ens.network.state_dict().items()}
    spec = lattices.mos2_lattice(s1_concentration=(0.1, 0.1))
    frame = synthetic.generate_frame(spec, (192, 192), seed=11, conditions=synthetic.ImagingConditions(probe_fwhm_A=1.1, dose_e_per_A2=8e4))
    config = iterative.IterationConfig(steps=6, synthetic_frames=8, batch_per_member=1)
    adapted, report = iterative.elit_iteration(ens, frame.image, spec, config)
    for k, v in ens.network.state_dict().items():
        torch.testing.assert_close(v, before_weights[k])
    assert any((a - b).abs().max() > 0 for a, b in zip(adapted.network.state_dict().values(), before_weights.values()))
    assert set(report.counts_before) == set(report.counts_after) == {"Mo", "S2", "S1", "W"}
    assert report.pseudo_labels["S1"] >= 1
    assert sum(report.pseudo_labels.values()) <= sum(report.counts_before.values())
    assert abs(report.estimated_pixel_size_A - 0.12) < 0.012
    assert 0.8 < report.estimated_probe_fwhm_A < 1.4
    assert adapted.metadata["elit_iterations"] == 1
    assert report.seconds > 0
