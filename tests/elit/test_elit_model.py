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


def test_inference_shortcuts_give_the_training_pass() -> None:
    # Shared-input stem, in-place skips and the matrix-product head (inference) against the plain pass with autograd.
    torch.manual_seed(1)
    net = model.EnsembleUNet(members=3, classes=4, base_channels=4).eval()
    for parameter in net.parameters():
        parameter.data += 0.1 * torch.randn_like(parameter)  # non-zero head bias too
    image = torch.randn(2, 1, 40, 56)
    with torch.enable_grad():
        reference = net(image.expand(-1, 3, -1, -1))
    with torch.inference_mode():
        shared = net(image)
        half = net.half_logits(image)
    torch.testing.assert_close(shared, reference.detach(), rtol=1e-5, atol=1e-5)
    assert half.shape == (2, 3 * 4, 20, 28)
    upsampled = torch.nn.functional.interpolate(half, size=(40, 56), mode="bilinear", align_corners=False)
    torch.testing.assert_close(upsampled.view(2, 3, 4, 40, 56), shared)


def test_probability_maps_summarise_the_member_probabilities() -> None:
    torch.manual_seed(2)
    ens = ensemble.Ensemble(model.EnsembleUNet(3, 4, 4), ("background", "a", "b", "c"))
    image = numpy.random.default_rng(2).random((45, 70))
    for augment in (False, True):
        members = ens.member_probabilities(image, test_time_augmentation=augment)
        maps = ens.probability_maps(image, threshold=0.3, test_time_augmentation=augment)
        numpy.testing.assert_allclose(maps.mean, members.mean(axis=0), atol=1e-6)
        numpy.testing.assert_allclose(maps.variance, members.var(axis=0), atol=1e-6)
        numpy.testing.assert_array_equal(maps.mask, 1.0 - maps.mean[0] > 0.3)
        numpy.testing.assert_allclose(maps.inside, members[:, :, maps.mask], atol=1e-6)
    # Another grid samples the same field: on twice the pixels, the half-resolution logits upsampled four times.
    fine = ens.probability_maps(image, output_shape=(90, 140))
    x = torch.from_numpy(ensemble.pad_to_multiple(ensemble.normalise_frame(ensemble.validate_frame(image)), 16))[None, None]
    with torch.inference_mode():
        logits = torch.nn.functional.interpolate(ens.network.half_logits(x), scale_factor=4.0, mode="bilinear", align_corners=False)
        expected = torch.softmax(logits[0, :, :90, :140].reshape(3, 4, 90, 140), dim=1)
    numpy.testing.assert_allclose(fine.mean, expected.mean(0).numpy(), atol=1e-5)
    numpy.testing.assert_allclose(fine.variance, expected.var(0, unbiased=False).numpy(), atol=1e-6)
