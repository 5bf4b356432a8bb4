"""A polar thin film for 4D-STEM: CBED frames whose centre of mass follows the local field.

In a ferroelectric, the in-plane polarization comes with an electric field
that deflects the probe; the bright-field disc of each CBED frame shifts by
a few tenths of a mrad, and a centre-of-mass scalarizer maps the domains.
The film has stripe domains of alternating polarization plus one circular
domain turned by 90 degrees; walls are 2 nm wide.
"""

from __future__ import annotations

import math
import typing

import numpy
import numpy.typing

from nion_autoem.geometry import ScanFrame
from nion_autoem.twin import spectra
from nion_autoem.twin.clock import SimulatedClock
from nion_autoem.twin.clock import StageDrift
from nion_autoem.twin.sample import ProbeConditions
from nion_autoem.twin.sample import SampleBase
from nion_autoem.twin.sample import add_poisson_noise
from nion_autoem.twin.sample import blur_image
from nion_autoem.twin.sample import defocus_blur_nm
from nion_autoem.twin.sample import raster_times_s

_NDArray = numpy.typing.NDArray[typing.Any]

ADF_FRACTION = 0.02


class PolarDomainSample(SampleBase):
    """Stripe and bubble polarization domains with a known centre-of-mass field.

    Parameters
    ----------
    stripe_period_nm : float
        Period of the stripe domains (two domains per period).
    stripe_angle_rad : float
        Direction of the stripe walls' normal.
    deflection_mrad : float
        CoM deflection inside a domain.
    convergence_mrad : float
        Bright-field disc semi-angle.
    """

    def __init__(self, *, title: str = "Polar domains, 4D-STEM (twin)", seed: int = 0, stripe_period_nm: float = 40.0,
                 stripe_angle_rad: float = math.radians(30.0), deflection_mrad: float = 0.5, convergence_mrad: float = 20.0,
                 bubble_center_nm: tuple[float, float] = (60.0, -60.0), bubble_radius_nm: float = 25.0,
                 drift: StageDrift | None = None, clock: SimulatedClock | None = None) -> None:
        if stripe_period_nm <= 0:
            raise ValueError(f"stripe_period_nm must be > 0 nm, got {stripe_period_nm!r}")
        self.title = title
        self.stripe_period_nm = stripe_period_nm
        self.stripe_angle_rad = stripe_angle_rad
        self.deflection_mrad = deflection_mrad
        self.convergence_mrad = convergence_mrad
        self.bubble_center_nm = bubble_center_nm
        self.bubble_radius_nm = bubble_radius_nm
        super().__init__(seed=seed, drift=drift, clock=clock)

    # -- ground truth ---------------------------------------------------------------------------

    def com_field_mrad(self, sample_position_nm: numpy.typing.ArrayLike) -> _NDArray:
        """Centre-of-mass deflection (..., 2) (y, x) in mrad at sample positions (..., 2) (tests only)."""
        p = numpy.asarray(sample_position_nm, dtype=float)
        normal = numpy.array([math.sin(self.stripe_angle_rad), math.cos(self.stripe_angle_rad)])
        phase = 2 * math.pi * (p @ normal) / self.stripe_period_nm
        # A sharp square wave with 2 nm walls: polarization along the walls, alternating sign.
        sign = numpy.tanh(numpy.sin(phase) * self.stripe_period_nm / (2 * math.pi * 2.0))
        along = numpy.array([normal[1], -normal[0]])
        field = sign[..., numpy.newaxis] * along
        r = numpy.linalg.norm(p - numpy.asarray(self.bubble_center_nm), axis=-1)
        inside = 1.0 / (1.0 + numpy.exp((r - self.bubble_radius_nm) / 1.0))
        field = field * (1 - inside)[..., numpy.newaxis] + inside[..., numpy.newaxis] * normal
        return typing.cast(_NDArray, self.deflection_mrad * field)

    def com_field_at(self, position_nm: numpy.typing.ArrayLike) -> _NDArray:
        """Centre-of-mass deflection (..., 2) in mrad at scan-field positions (..., 2) now."""
        return self.com_field_mrad(self._to_sample(numpy.asarray(position_nm, dtype=float), self.clock.now_s))

    def com_field_map(self, frame: ScanFrame) -> _NDArray:
        """Centre-of-mass field over the pixels of ``frame``, shape (rows, columns, 2), in mrad."""
        return self.com_field_at(frame.pixel_grid_nm())

    def domain_index(self, sample_position_nm: numpy.typing.ArrayLike) -> _NDArray:
        """0 / 1 for the two stripe domains, 2 inside the bubble domain."""
        p = numpy.asarray(sample_position_nm, dtype=float)
        normal = numpy.array([math.sin(self.stripe_angle_rad), math.cos(self.stripe_angle_rad)])
        stripe = (numpy.sin(2 * math.pi * (p @ normal) / self.stripe_period_nm) < 0).astype(int)
        r = numpy.linalg.norm(p - numpy.asarray(self.bubble_center_nm), axis=-1)
        return numpy.where(r < self.bubble_radius_nm, 2, stripe)

    # -- acquisitions ---------------------------------------------------------------------------

    def _adf_fraction(self, p: _NDArray) -> _NDArray:
        # Faint diffraction contrast between domains, and darker walls, as in real ADF surveys.
        field = self.com_field_mrad(p) / self.deflection_mrad
        along = numpy.array([math.cos(self.stripe_angle_rad), -math.sin(self.stripe_angle_rad)])
        return typing.cast(_NDArray, ADF_FRACTION * (1.0 + 0.04 * (field @ along) - 0.08 * (1 - numpy.linalg.norm(field, axis=-1))))

    def render_frame(self, frame: ScanFrame, pixel_time_us: float, probe: ProbeConditions, channels: typing.Sequence[str] = ("HAADF",)) -> dict[str, _NDArray]:
        """ADF survey with faint domain contrast; defocus blurs it."""
        with self._lock:
            row_start_s, duration_s = raster_times_s(frame, self.clock.now_s, pixel_time_us)
            self.clock.advance(duration_s)
            electrons = probe.electrons_per_s * pixel_time_us * 1e-6
            self._electrons += electrons * frame.shape[0] * frame.shape[1]
            p = self._to_sample(frame.pixel_grid_nm(), row_start_s[:, numpy.newaxis])
            # Domains and walls are far wider than a focused probe, so only defocus blurs them.
            defocus = self.defocus_from_focus_nm(probe, self._to_sample(numpy.asarray(frame.center_nm), row_start_s[0]))
            fraction = blur_image(self._adf_fraction(p), float(defocus_blur_nm(defocus, probe.convergence_semi_angle_rad)) / frame.pixel_size_nm)
            return {c: add_poisson_noise((electrons * fraction * (1.0 if c == "HAADF" else 2.0 if c == "MAADF" else 0.0)).astype(numpy.float32), self._rng)
                    for c in channels}

    def dwell(self, positions_nm: numpy.typing.ArrayLike, sample_time_s: float, probe: ProbeConditions) -> dict[str, _NDArray]:
        with self._lock:
            sample_nm, electrons = self._dwell_samples(positions_nm, sample_time_s, probe)
            fraction = self._adf_fraction(sample_nm)
            return {"HAADF": add_poisson_noise((electrons * fraction).astype(numpy.float32), self._rng),
                    "MAADF": add_poisson_noise((2 * electrons * fraction).astype(numpy.float32), self._rng)}

    def spectrum(self, position_nm: typing.Sequence[float], exposure_s: float, probe: ProbeConditions, energies_eV: _NDArray) -> _NDArray:
        energies = numpy.asarray(energies_eV, dtype=float)
        width = spectra.channel_width_eV(energies)
        with self._lock:
            self.clock.advance(exposure_s)
            electrons = probe.electrons_per_s * exposure_s
            self._electrons += electrons
            shape = 0.8 * spectra.zero_loss_peak(energies) + 0.2 * spectra.lorentzian(energies, 15.0, 6.0)
            return add_poisson_noise((electrons * width * shape).astype(numpy.float32), self._rng)

    def diffraction(self, position_nm: typing.Sequence[float], exposure_s: float, probe: ProbeConditions, shape: tuple[int, int], pixel_mrad: float) -> _NDArray | None:
        """A CBED frame (electrons per pixel): the bright-field disc shifted by the local CoM field."""
        if pixel_mrad <= 0:
            raise ValueError(f"pixel_mrad must be > 0 mrad per camera pixel, got {pixel_mrad!r}")
        with self._lock:
            t0 = self.clock.advance(exposure_s)
            electrons = probe.electrons_per_s * exposure_s
            self._electrons += electrons
            if electrons <= 0:
                return numpy.zeros(shape, numpy.float32)
            p = self._to_sample(numpy.asarray(position_nm, dtype=float), t0 + exposure_s / 2)
            shift_px = self.com_field_mrad(p) / pixel_mrad
            cy, cx = (shape[0] - 1) / 2 + shift_px[0], (shape[1] - 1) / 2 + shift_px[1]
            radius_px = self.convergence_mrad / pixel_mrad
            y = numpy.arange(shape[0], dtype=numpy.float32)[:, numpy.newaxis] - numpy.float32(cy)
            x = numpy.arange(shape[1], dtype=numpy.float32)[numpy.newaxis, :] - numpy.float32(cx)
            r = numpy.sqrt(y * y + x * x)
            disc = 1.0 / (1.0 + numpy.exp(numpy.clip((r - radius_px) / 0.7, -50, 50)))
            disc /= max(float(disc.sum()), 1e-12)
            # Most electrons stay in the disc; the rest is diffuse scattering.
            diffuse = numpy.exp(-r / (3 * radius_px))
            diffuse /= float(diffuse.sum())
            expected = electrons * (0.9 * disc + 0.1 * diffuse)
            return add_poisson_noise(expected.astype(numpy.float32), self._rng)
