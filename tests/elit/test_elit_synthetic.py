from __future__ import annotations

import dataclasses

import numpy
import scipy.ndimage

from nion_autoem_elit import lattices
from nion_autoem_elit import synthetic

CLEAN = synthetic.ImagingConditions(pixel_size_A=0.1, probe_fwhm_A=0.8, dose_e_per_A2=5e6, background_fraction=0.0)


def test_same_seed_same_frame_and_different_seed_differs() -> None:
    spec = lattices.mos2_lattice()
    a = synthetic.generate_frame(spec, (96, 96), seed=7)
    b = synthetic.generate_frame(spec, (96, 96), seed=7)
    c = synthetic.generate_frame(spec, (96, 96), seed=8)
    numpy.testing.assert_array_equal(a.image, b.image)
    numpy.testing.assert_array_equal(a.positions, b.positions)
    assert not numpy.array_equal(a.image, c.image)


def test_labels_sit_on_image_maxima() -> None:
    spec = lattices.mos2_lattice(s1_concentration=(0.0, 0.0), empty_s_concentration=(0.0, 0.0))
    frame = synthetic.generate_frame(spec, (160, 160), seed=1, conditions=CLEAN)
    smooth = scipy.ndimage.gaussian_filter(frame.image, 1.0)
    maxima = (smooth == scipy.ndimage.maximum_filter(smooth, size=5)) & (smooth > 0.1 * smooth.max())
    peaks = numpy.argwhere(maxima)
    inner = ((frame.positions > 6) & (frame.positions < 153)).all(axis=1)
    assert inner.sum() > 30
    for position in frame.positions[inner]:
        distance = numpy.hypot(*(peaks - position).T).min()
        assert distance <= 1.0, f"no image maximum within 1 px of labelled column at {position}"
    # The label mask carries the column's class at the column.
    rows, cols = numpy.round(frame.positions[inner]).astype(int).T
    numpy.testing.assert_array_equal(frame.label_mask[rows, cols], frame.classes[inner])


def test_z_contrast_orders_column_brightness() -> None:
    spec = lattices.mos2_lattice(s1_concentration=(0.1, 0.1), w_concentration=(0.1, 0.1))
    frame = synthetic.generate_frame(spec, (256, 256), seed=2, conditions=CLEAN)
    rows, cols = numpy.round(frame.positions).astype(int).T
    inside = (rows > 2) & (rows < 253) & (cols > 2) & (cols < 253)
    peak = frame.image[rows[inside], cols[inside]]
    mean = {k: peak[frame.classes[inside] == spec.class_index(k)].mean() for k in ("W", "Mo", "S2", "S1")}
    assert mean["W"] > mean["Mo"] > mean["S2"] > mean["S1"]
    # Z^1.7: S2 / Mo = 2 * 16^1.7 / 42^1.7 is about 0.39.
    assert abs(mean["S2"] / mean["Mo"] - 0.39) < 0.05


def test_per_class_counts_follow_concentrations() -> None:
    spec = lattices.mos2_lattice(s1_concentration=(0.1, 0.1), empty_s_concentration=(0.0, 0.0), w_concentration=(0.05, 0.05))
    counts = numpy.zeros(5)
    for seed in range(4):
        frame = synthetic.generate_frame(spec, (256, 256), seed=seed, conditions=CLEAN)
        counts += numpy.bincount(frame.classes, minlength=5)
    metal = counts[1] + counts[4]
    chalcogen = counts[2] + counts[3]
    assert abs(metal / chalcogen - 1.0) < 0.05  # honeycomb: one metal per chalcogen site
    assert abs(counts[3] / chalcogen - 0.1) < 0.03
    assert abs(counts[4] / metal - 0.05) < 0.02


def test_dose_sets_noise() -> None:
    spec = lattices.mos2_lattice()
    low = synthetic.generate_frame(spec, (96, 96), seed=3, conditions=dataclasses.replace(CLEAN, dose_e_per_A2=1e4))
    high = synthetic.generate_frame(spec, (96, 96), seed=3, conditions=dataclasses.replace(CLEAN, dose_e_per_A2=1e6))
    assert high.image.sum() > 50 * low.image.sum()
    assert numpy.all(low.image == numpy.round(low.image))  # detector counts


def test_other_lattices_generate() -> None:
    for spec in (lattices.graphene_lattice(), lattices.square_lattice()):
        frame = synthetic.generate_frame(spec, (96, 96), seed=0)
        assert frame.image.shape == frame.label_mask.shape == (96, 96)
        assert len(frame.positions) > 5
        assert set(numpy.unique(frame.label_mask)) <= set(range(len(spec.class_names)))
    assert abs(lattices.graphene_lattice().nearest_neighbour_A - 1.42) < 0.01
