from __future__ import annotations

import math

import numpy
import pytest

from nion_autoem.geometry import ScanFrame


@pytest.mark.parametrize("rotation", [0.0, 0.3, -1.2])
def test_pixel_nm_fraction_round_trips(rotation: float) -> None:
    frame = ScanFrame((128, 256), fov_nm=20.0, center_nm=(3.0, -4.0), rotation_rad=rotation)
    pixels = numpy.array([[0, 0], [127, 255], [63.5, 127.5], [10.25, 200.75]])
    back = frame.nm_to_pixel(frame.pixel_to_nm(pixels))
    assert numpy.allclose(back, pixels, atol=1e-9)
    assert numpy.allclose(frame.fraction_to_pixel(frame.pixel_to_fraction(pixels)), pixels)


def test_centre_and_scale() -> None:
    frame = ScanFrame((100, 200), fov_nm=20.0, center_nm=(1.0, 2.0))
    assert frame.pixel_size_nm == pytest.approx(0.1)
    assert frame.size_nm == pytest.approx((10.0, 20.0))
    # the middle of the pixel grid is the scan centre
    assert frame.pixel_to_nm((49.5, 99.5)) == pytest.approx([1.0, 2.0])
    # one pixel down is +y by one pixel size, one pixel right is +x
    assert frame.pixel_to_nm((50.5, 99.5)) - frame.pixel_to_nm((49.5, 99.5)) == pytest.approx([0.1, 0.0])


def test_rotation_keeps_distances_and_moves_corners() -> None:
    plain = ScanFrame((64, 64), 10.0)
    turned = ScanFrame((64, 64), 10.0, rotation_rad=math.pi / 2)
    a, b = turned.pixel_to_nm((0, 0)), turned.pixel_to_nm((63, 0))
    assert numpy.hypot(*(a - b)) == pytest.approx(63 * turned.pixel_size_nm)
    assert not numpy.allclose(plain.pixel_to_nm((0, 0)), turned.pixel_to_nm((0, 0)))


def test_contains_and_dict_round_trip() -> None:
    frame = ScanFrame((64, 64), 10.0, (1.0, 1.0), 0.2)
    assert frame.contains_nm((1.0, 1.0))
    assert not frame.contains_nm((20.0, 1.0))
    assert ScanFrame.from_dict(frame.to_dict()) == frame


@pytest.mark.parametrize("kwargs, message", [
    ({"shape": (0, 10), "fov_nm": 1.0}, "shape"),
    ({"shape": (10, 10), "fov_nm": -1.0}, "fov_nm"),
    ({"shape": (10, 10), "fov_nm": float("nan")}, "fov_nm"),
    ({"shape": (10, 10), "fov_nm": 1.0, "center_nm": (float("nan"), 0.0)}, "center_nm"),
])
def test_bad_frames_say_what_is_wrong(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScanFrame(**kwargs)  # type: ignore[arg-type]
