from __future__ import annotations

import numpy
import torch

from nion_autoem_elit import ensemble
from nion_autoem_elit import model


def test_vectorised_pass_equals_looping_members() -> None:
    torch.manual_seed(0)
    net = model.EnsembleUNet(members=4, classes=5, base_channels=4).eval()
    x = torch.randn(2, 4, 48, 64)  # every member sees a different image
    with torch.no_grad():
        together = net(x)
        looped = torch.cat([net.member(m)(x[:, m : m + 1]) for m in range(4)], dim=1)
    assert together.shape == (2, 4, 5, 48, 64)
    torch.testing.assert_close(together, looped, rtol=1e-5, atol=1e-5)
    # Members really differ, so the comparison above is not trivially true.
    assert (together[:, 0] - together[:, 1]).abs().max() > 1e-3


def test_member_probabilities_are_distributions_for_any_frame_size() -> None:
    ens = ensemble.Ensemble(model.EnsembleUNet(3, 4, 4), ("background", "a", "b", "c"))
    p = ens.member_probabilities(numpy.random.default_rng(0).random((45, 70)), test_time_augmentation=True)
    assert p.shape == (3, 4, 45, 70)
    numpy.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)


def test_normalisation_ignores_intensity_scale() -> None:
    frame = numpy.random.default_rng(1).random((64, 64)).astype(numpy.float32)
    numpy.testing.assert_allclose(ensemble.normalise_frame(frame), ensemble.normalise_frame(100.0 * frame + 7.0), atol=1e-5)
