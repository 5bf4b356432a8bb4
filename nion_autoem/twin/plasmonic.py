"""Silver nanoparticles on a thin SiN membrane: a twin for plasmon mapping with EELS.

Each particle is a convex polygon in projection (rod, triangle, cube).  Its
surface plasmon modes live in different places: the lowest-energy dipole
modes at corners and rod tips, edge modes along the sides, the bulk plasmon
(3.8 eV in Ag) inside, and a bonding gap mode between two close particles.
A mode's strength at the probe falls off exponentially with the probe's
distance from where the mode lives, including aloof positions in vacuum, so
the peak energy of a spectrum tells a scalarizer where the probe sits.
"""

from __future__ import annotations

import dataclasses
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

AG_BULK_PLASMON_EV = 3.8
#: HAADF fraction of the probe scattered by a particle and by the bare membrane.
PARTICLE_ADF_FRACTION = 0.05
SUBSTRATE_ADF_FRACTION = 0.004
MODE_DECAY_NM = 8.0


@dataclasses.dataclass(frozen=True)
class Mode:
    """One plasmon mode: where it lives, its energy, width and strength."""

    name: str
    particle: int
    kind: str  # "corner", "edge", "bulk" or "gap"
    energy_eV: float
    fwhm_eV: float
    strength: float


@dataclasses.dataclass(frozen=True)
class Particle:
    """A metal particle seen in projection: a convex polygon in sample nm (y, x)."""

    kind: str
    center_nm: tuple[float, float]
    size_nm: tuple[float, float]
    rotation_rad: float

    @property
    def vertices_nm(self) -> _NDArray:
        """Polygon corners (k, 2), counter-clockwise on screen."""
        if self.kind in ("rod", "cube"):
            h, w = self.size_nm[0] / 2, self.size_nm[1] / 2
            local = numpy.array([[-h, -w], [-h, w], [h, w], [h, -w]])
        elif self.kind == "triangle":
            a = self.size_nm[1]
            r = a / math.sqrt(3)
            ang = numpy.radians([90.0, 210.0, 330.0])
            local = numpy.stack([-r * numpy.sin(ang), r * numpy.cos(ang)], axis=1)
        else:
            raise ValueError(f"kind must be 'rod', 'triangle' or 'cube', got {self.kind!r}")
        c, s = math.cos(self.rotation_rad), math.sin(self.rotation_rad)
        return typing.cast(_NDArray, local @ numpy.array([[c, -s], [s, c]]).T + numpy.asarray(self.center_nm))

    def halfplane_distance(self, p: _NDArray) -> _NDArray:
        """Cheap signed distance: exact inside and beside edges, underestimated off corners."""
        v = self.vertices_nm
        d = numpy.full(p.shape[:-1], -numpy.inf)
        for a, b in zip(v, numpy.roll(v, -1, axis=0)):
            edge = b - a
            normal = numpy.array([edge[1], -edge[0]]) / numpy.hypot(*edge)
            if numpy.dot(numpy.asarray(self.center_nm) - a, normal) > 0:
                normal = -normal
            d = numpy.maximum(d, (p[..., 0] - a[0]) * normal[0] + (p[..., 1] - a[1]) * normal[1])
        return d

    def signed_distance(self, p: _NDArray) -> _NDArray:
        """Signed distance (..., ) from points (..., 2) to the outline: negative inside."""
        v = self.vertices_nm
        out_shape = p.shape[:-1]
        p = p.reshape(-1, 2)
        d = numpy.full(p.shape[0], -numpy.inf)
        for a, b in zip(v, numpy.roll(v, -1, axis=0)):
            edge = b - a
            normal = numpy.array([edge[1], -edge[0]]) / numpy.hypot(*edge)
            # Orient the normal outwards.
            if numpy.dot(numpy.asarray(self.center_nm) - a, normal) > 0:
                normal = -normal
            d = numpy.maximum(d, (p - a) @ normal)
        outside = d > 0
        if numpy.any(outside):
            # Outside, the true distance is the distance to the nearest edge segment.
            q = p[outside]
            best = numpy.full(q.shape[0], numpy.inf)
            for a, b in zip(v, numpy.roll(v, -1, axis=0)):
                edge = b - a
                t = numpy.clip(((q - a) @ edge) / (edge @ edge), 0, 1)
                best = numpy.minimum(best, numpy.hypot(*(q - (a + t[:, numpy.newaxis] * edge)).T))
            d[outside] = best
        return d.reshape(out_shape)

    def corner_distance(self, p: _NDArray) -> _NDArray:
        """Distance from points (..., 2) to the nearest corner (rod: nearest tip)."""
        v = self.vertices_nm
        if self.kind == "rod":
            # A rod's tips are its short sides: use their midpoints.
            long_axis = 1 if self.size_nm[1] >= self.size_nm[0] else 0
            v = numpy.array([(v[0] + v[3]) / 2, (v[1] + v[2]) / 2]) if long_axis == 1 else numpy.array([(v[0] + v[1]) / 2, (v[2] + v[3]) / 2])
        return typing.cast(_NDArray, numpy.min(numpy.linalg.norm(p[..., numpy.newaxis, :] - v, axis=-1), axis=-1))


def default_particles() -> list[Particle]:
    """A rod, a triangle, a cube and a rod dimer with an 8 nm gap, within 300 nm of the origin."""
    return [
        Particle("rod", (-60.0, -80.0), (20.0, 80.0), 0.3),
        Particle("triangle", (60.0, -60.0), (60.0, 70.0), 0.1),
        Particle("cube", (-50.0, 70.0), (45.0, 45.0), 0.5),
        Particle("rod", (70.0, 45.0), (20.0, 60.0), 0.0),
        Particle("rod", (70.0, 113.0), (20.0, 60.0), 0.0),
    ]


def particle_modes(particles: typing.Sequence[Particle], gap_limit_nm: float = 15.0) -> list[Mode]:
    """The plasmon modes of ``particles``; energies scale with size as in real Ag particles."""
    modes: list[Mode] = []
    for i, p in enumerate(particles):
        length = max(p.size_nm)
        if p.kind == "rod":
            corner = max(0.9, 3.0 - 0.017 * length)
            edge = 2.5
        elif p.kind == "triangle":
            corner = max(0.9, 2.7 - 0.018 * length)
            edge = 2.3
        else:
            corner = max(1.2, 2.8 - 0.018 * length)
            edge = 2.9
        modes.append(Mode(f"p{i}-corner", i, "corner", corner, 0.25, 0.006))
        modes.append(Mode(f"p{i}-edge", i, "edge", edge, 0.35, 0.003))
        modes.append(Mode(f"p{i}-bulk", i, "bulk", AG_BULK_PLASMON_EV, 0.5, 0.02))
    for i in range(len(particles)):
        for j in range(i + 1, len(particles)):
            gap = _gap_nm(particles[i], particles[j])
            if gap < gap_limit_nm:
                # The bonding mode of a dimer red-shifts as the gap closes.
                modes.append(Mode(f"gap{i}-{j}", i * 100 + j, "gap", 1.0 + 0.04 * gap, 0.2, 0.01))
    return modes


def _gap_nm(a: Particle, b: Particle) -> float:
    return float(numpy.min(b.signed_distance(_outline(a))))


def _outline(p: Particle, n: int = 200) -> _NDArray:
    v = p.vertices_nm
    t = numpy.linspace(0, 1, n // len(v), endpoint=False)[:, numpy.newaxis]
    return numpy.concatenate([a + t * (b - a) for a, b in zip(v, numpy.roll(v, -1, axis=0))])


class PlasmonicSample(SampleBase):
    """Ag nanoparticles (rods, a triangle, a cube, a gap dimer) on a thin membrane.

    Parameters
    ----------
    particles : sequence of Particle, optional
        Default :func:`default_particles`.
    title : str
    seed : int
    drift : StageDrift, optional
    clock : SimulatedClock, optional
    probe_sigma_nm : float
        Probe size; matters only at high magnification.
    """

    def __init__(self, particles: typing.Sequence[Particle] | None = None, *, title: str = "Ag nanoparticles on SiN (twin)", seed: int = 0,
                 drift: StageDrift | None = None, clock: SimulatedClock | None = None, probe_sigma_nm: float = 0.3) -> None:
        self.title = title
        self.particles = list(particles) if particles is not None else default_particles()
        self.modes = particle_modes(self.particles)
        super().__init__(seed=seed, drift=drift, clock=clock)
        self.probe_sigma_nm = probe_sigma_nm

    # -- ground truth ---------------------------------------------------------------------------

    def mode_amplitudes(self, sample_position_nm: numpy.typing.ArrayLike) -> dict[str, _NDArray]:
        """Excitation strength of every mode at sample positions (..., 2) (tests and benchmarks only)."""
        p = numpy.asarray(sample_position_nm, dtype=float)
        sdf = [particle.signed_distance(p) for particle in self.particles]
        out: dict[str, _NDArray] = {}
        for mode in self.modes:
            if mode.kind == "gap":
                i, j = divmod(mode.particle, 100)
                gap = _gap_nm(self.particles[i], self.particles[j])
                excess = numpy.maximum(sdf[i], 0) + numpy.maximum(sdf[j], 0) - gap
                amp = numpy.exp(-excess / 3.0) * (sdf[i] > -2) * (sdf[j] > -2)
            else:
                d = sdf[mode.particle]
                if mode.kind == "bulk":
                    amp = 1.0 / (1.0 + numpy.exp((d + 3.0) / 1.5))
                elif mode.kind == "corner":
                    amp = numpy.exp(-self.particles[mode.particle].corner_distance(p) / MODE_DECAY_NM)
                else:
                    corner = numpy.exp(-self.particles[mode.particle].corner_distance(p) / MODE_DECAY_NM)
                    amp = numpy.exp(-numpy.abs(d) / MODE_DECAY_NM) * (1.0 - corner)
            out[mode.name] = amp * mode.strength
        return out

    def modes_at(self, position_nm: numpy.typing.ArrayLike) -> list[tuple[str, float, float]]:
        """(mode name, energy in eV, strength) of every mode at scan-field ``position_nm`` now, strongest first."""
        p = self._to_sample(numpy.asarray(position_nm, dtype=float), self.clock.now_s)
        amplitudes = self.mode_amplitudes(p)
        rows = [(mode.name, mode.energy_eV, float(amplitudes[mode.name])) for mode in self.modes]
        return sorted(rows, key=lambda row: -row[2])

    def mode_map(self, frame: ScanFrame, mode_name: str) -> _NDArray:
        """Strength of one mode over the pixels of ``frame``, at the current stage position."""
        names = [m.name for m in self.modes]
        if mode_name not in names:
            raise ValueError(f"mode_name must be one of {names}, got {mode_name!r}")
        p = self._to_sample(frame.pixel_grid_nm(), self.clock.now_s)
        return self.mode_amplitudes(p)[mode_name]

    def thickness_fraction(self, sample_position_nm: _NDArray) -> _NDArray:
        """1 inside a particle, 0 on the bare membrane (soft 0.5 nm edge)."""
        inside = numpy.zeros(sample_position_nm.shape[:-1])
        for particle in self.particles:
            d = numpy.clip(particle.halfplane_distance(sample_position_nm) / 0.5, -30.0, 30.0)
            inside = numpy.maximum(inside, 1.0 / (1.0 + numpy.exp(d)))
        return inside

    # -- acquisitions ---------------------------------------------------------------------------

    def render_frame(self, frame: ScanFrame, pixel_time_us: float, probe: ProbeConditions, channels: typing.Sequence[str] = ("HAADF",)) -> dict[str, _NDArray]:
        """Survey image: particles bright on a faint membrane, Poisson counts; defocus blurs the outlines."""
        with self._lock:
            row_start_s, duration_s = raster_times_s(frame, self.clock.now_s, pixel_time_us)
            self.clock.advance(duration_s)
            electrons = probe.electrons_per_s * pixel_time_us * 1e-6
            self._electrons += electrons * frame.shape[0] * frame.shape[1]
            out: dict[str, _NDArray] = {}
            if electrons <= 0:
                return {c: numpy.zeros(frame.shape, numpy.float32) for c in channels}
            grid = frame.pixel_grid_nm()
            p = self._to_sample(grid, row_start_s[:, numpy.newaxis])
            # The particles are far larger than a focused probe, so only defocus blurs them.
            defocus = self.defocus_from_focus_nm(probe, self._to_sample(numpy.asarray(frame.center_nm), row_start_s[0]))
            thickness = blur_image(self.thickness_fraction(p), float(defocus_blur_nm(defocus, probe.convergence_semi_angle_rad)) / frame.pixel_size_nm)
            for channel in channels:
                scale = 1.0 if channel == "HAADF" else 2.5 if channel == "MAADF" else 0.0
                expected = electrons * scale * (SUBSTRATE_ADF_FRACTION + PARTICLE_ADF_FRACTION * thickness)
                out[channel] = add_poisson_noise(expected.astype(numpy.float32), self._rng)
            return out

    def dwell(self, positions_nm: numpy.typing.ArrayLike, sample_time_s: float, probe: ProbeConditions) -> dict[str, _NDArray]:
        """ADF counts while dwelling at scan-field positions (N, 2); Ag does not damage here."""
        with self._lock:
            sample_nm, electrons = self._dwell_samples(positions_nm, sample_time_s, probe)
            thickness = self.thickness_fraction(sample_nm)
            expected = electrons * (SUBSTRATE_ADF_FRACTION + PARTICLE_ADF_FRACTION * thickness)
            return {"HAADF": add_poisson_noise(expected.astype(numpy.float32), self._rng),
                    "MAADF": add_poisson_noise((2.5 * expected).astype(numpy.float32), self._rng)}

    def spectrum(self, position_nm: typing.Sequence[float], exposure_s: float, probe: ProbeConditions, energies_eV: _NDArray) -> _NDArray:
        """Low-loss EELS at the parked probe: ZLP, plasmon modes by position, membrane background."""
        energies = numpy.asarray(energies_eV, dtype=float)
        width = spectra.channel_width_eV(energies)
        with self._lock:
            t0 = self.clock.advance(exposure_s)
            electrons = probe.electrons_per_s * exposure_s
            self._electrons += electrons
            if electrons <= 0:
                return numpy.zeros(energies.shape, numpy.float32)
            p = self._to_sample(numpy.asarray(position_nm, dtype=float), t0 + exposure_s / 2)
            amplitudes = self.mode_amplitudes(p)
            thickness = float(self.thickness_fraction(p))
            loss = numpy.zeros_like(energies)
            for mode in self.modes:
                loss += float(amplitudes[mode.name]) * spectra.lorentzian(energies, mode.energy_eV, mode.fwhm_eV)
            # The SiN membrane: band gap onset near 5 eV and its plasmon at 22 eV; Ag adds interband losses.
            membrane = 0.03 * spectra.lorentzian(energies, 22.0, 8.0) * (1.0 / (1.0 + numpy.exp(-(energies - 5.0) / 0.4)))
            interband = 0.01 * thickness * spectra.power_law_background(energies, 4.0, 1.5) / 10.0
            total_loss = float(numpy.sum(loss + membrane + interband) * width)
            shape = max(1.0 - total_loss, 0.1) * spectra.zero_loss_peak(energies, 0.15) + loss + membrane + interband
            return add_poisson_noise((electrons * width * shape).astype(numpy.float32), self._rng)

    def diffraction(self, position_nm: typing.Sequence[float], exposure_s: float, probe: ProbeConditions, shape: tuple[int, int], pixel_mrad: float) -> _NDArray | None:
        """No twin Ronchigram: the exposure spends time, usim draws the frame."""
        with self._lock:
            self.clock.advance(exposure_s)
            self._electrons += probe.electrons_per_s * exposure_s
        return None
