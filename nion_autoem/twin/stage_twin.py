"""The stage-scale sample as a usim twin: a grid square under usim's own stage controls.

:class:`GridSquareSample` puts a :class:`~nion_autoem.twin.stage_sample.StageSample`
(flakes, particles, rods, holes, contamination and rare platelets over tens of
µm) in usim's sample chooser beside the other twins, so a montage or a search
runs through :class:`~nion_autoem.swift.microscope.SwiftMicroscope` and usim's
``stage_position_m`` control exactly as it would on a microscope.

usim's stage is perfect; this one is not.  Whenever the stage offset the glue
reports changes (a stage move), the sample lands where an
:class:`~nion_autoem.twin.stage_sample.ImpreciseStage` puts it: backlash,
repeatability and settling drift of tens to hundreds of nm, which only
registration can find.  Spectra show the core-loss edges of what lies under
the probe (C K on the film, Fe L on round particles and rods, Co L on the
platelets) on whatever energy axis the spectrometer has.

At atomic resolution (a field of :data:`ATOMIC_FIELD_NM` or less) a flake
shows the MoS2 lattice of the MoS2 twin, with its S vacancies and beam
damage: the first such field on a flake makes a lattice *patch* there (a
:class:`~nion_autoem.twin.mos2.MoS2Sample` anchored at that point), and
fields within :data:`PATCH_REUSE_NM` of its anchor see the same atoms, so
damage done by a vacancy line stays where it was made.  Patches are
independent: two fields further apart than that see two patches, whose
lattices are not registered to each other.
"""

from __future__ import annotations

import math
import typing

import numpy
import numpy.typing

from nion_autoem.geometry import ScanFrame
from nion_autoem.twin.clock import SimulatedClock
from nion_autoem.twin.clock import StageDrift
from nion_autoem.twin.sample import ProbeConditions
from nion_autoem.twin.sample import SampleBase
from nion_autoem.twin.sample import TwinSample
from nion_autoem.twin.sample import defocus_blur_nm
from nion_autoem.twin.stage_sample import DETECTOR_YIELD
from nion_autoem.twin.stage_sample import ImpreciseStage
from nion_autoem.twin.stage_sample import StageErrors
from nion_autoem.twin.stage_sample import StageObject
from nion_autoem.twin.stage_sample import StageSample
from nion_autoem.twin.stage_sample import core_loss_counts

_NDArray = numpy.typing.NDArray[typing.Any]


#: Fields this small (nm) on a flake show its atoms.
ATOMIC_FIELD_NM = 20.0
#: A field whose centre lies within this distance (nm) of a patch's anchor sees that patch's atoms (and their damage).
PATCH_REUSE_NM = 5.0
#: Corner-to-centre size (nm) of a lattice patch: a field of ATOMIC_FIELD_NM up to PATCH_REUSE_NM off the anchor stays inside it.
PATCH_RADIUS_NM = 25.0

class GridSquareSample(SampleBase):
    """A :class:`StageSample` on an :class:`ImpreciseStage`, as a :class:`~nion_autoem.twin.sample.TwinSample` for usim.

    Parameters
    ----------
    title : str
        Its name in usim's sample chooser.
    seed : int
        Draws the objects, the stage's errors and the shot noise.
    errors : StageErrors or None
        The stage's imprecision (default ``StageErrors()``: backlash 150 nm,
        repeatability 60 nm, settling 25 nm); ``StageErrors(0, 0, 0)`` for usim's perfect stage.
    size_nm, objects : float, int
        The region and how many objects it holds (built on first use: about 0.5 s).
    drift, clock : optional
        Shared with the other twins on the same stage.
    lattice_patch : callable, optional
        ``lattice_patch(seed)`` makes the atoms of a flake patch (centred on
        its own origin, sharing this sample's clock); by default a MoS2 flake
        of :data:`PATCH_RADIUS_NM` with the MoS2 twin's imaging and damage.

    Notes
    -----
    usim's convention: a point ``p`` of the sample appears at scan-field
    ``p + stage_offset_nm`` (:class:`~nion_autoem.swift.microscope.SwiftMicroscope`
    maps its stage position, the point at the field's centre, onto it).
    """

    def __init__(self, *, title: str = "Grid square: flakes, particles, platelets (stage-scale twin)", seed: int = 0,
                 errors: StageErrors | None = None, size_nm: float = 40_000.0, objects: int = 800, drift: StageDrift | None = None,
                 clock: SimulatedClock | None = None, lattice_patch: typing.Callable[[int], TwinSample] | None = None) -> None:
        super().__init__(seed=seed, drift=drift, clock=clock)
        self.__lattice_patch = lattice_patch or self.__mos2_patch
        #: Lattice patches made so far: their anchor on the sample (nm) and their atoms.
        self.patches: list[tuple[tuple[float, float], TwinSample]] = []
        self.__patch_in_view: tuple[tuple[float, float], TwinSample] | None = None
        self.title = title
        self.__seed = int(seed)
        self.__size_nm = float(size_nm)
        self.__objects = int(objects)
        self.__sample: StageSample | None = None
        self.stage = ImpreciseStage(errors or StageErrors(), seed=seed)
        self.__seen_offset: tuple[float, float] = (0.0, 0.0)
        #: Every stage move the twin saw: commanded and true viewed point (nm), the truth registration is scored against.
        self.moves: list[tuple[tuple[float, float], tuple[float, float]]] = []
        #: Every spectrum: the sample point under the probe (nm) and the object there (None: bare film).
        self.spectra: list[tuple[tuple[float, float], StageObject | None]] = []

    @property
    def sample(self) -> StageSample:
        """The objects and the film (built on first use)."""
        with self._lock:
            if self.__sample is None:
                self.__sample = StageSample(self.__seed, size_nm=self.__size_nm, objects=self.__objects)
            return self.__sample

    def viewed_point_nm(self, time_s: float | None = None) -> _NDArray:
        """The sample point at the scan field's centre now (or at ``time_s``): the commanded one plus the stage's error."""
        with self._lock:
            self.__follow_stage()
            now = self.clock.now_s if time_s is None else time_s
            error = self.stage.true_position_nm(now) - numpy.asarray(self.stage.commanded_nm)
            return typing.cast(_NDArray, -(numpy.asarray(self.stage_offset_nm) + self.drift.offset_nm(now)) + error)

    def __follow_stage(self) -> None:
        """A changed stage offset is a move: the imprecise stage lands near the commanded point; lock held."""
        offset = (float(self.stage_offset_nm[0]), float(self.stage_offset_nm[1]))
        if math.dist(offset, self.__seen_offset) < 1e-3:
            return
        self.__seen_offset = offset
        self.__patch_in_view = None  # the next survey says what is in view
        commanded = (-offset[0], -offset[1])
        self.clock.advance(self.stage.move(commanded, now_s=self.clock.now_s))
        landed = self.stage.true_position_nm(self.clock.now_s)
        self.moves.append((commanded, (float(landed[0]), float(landed[1]))))

    def __mos2_patch(self, seed: int) -> TwinSample:
        from nion_autoem.twin import lattice
        from nion_autoem.twin.mos2 import MoS2Sample

        return MoS2Sample(lattice.mos2_flake(PATCH_RADIUS_NM, seed=seed), title=f"{self.title}: flake patch {seed}", seed=seed, drift=StageDrift(), clock=self.clock)

    def __patch_at(self, viewed_nm: _NDArray, fov_nm: float) -> tuple[tuple[float, float], TwinSample] | None:
        """The lattice patch a field of ``fov_nm`` centred on ``viewed_nm`` sees, made if needed; None off flakes or at lower magnification; lock held."""
        if fov_nm > ATOMIC_FIELD_NM:
            return None
        centre = (float(viewed_nm[0]), float(viewed_nm[1]))
        below = self.sample.object_at(centre)
        if below is None or below.kind != "flake":
            return None
        for anchor, patch in self.patches:
            if math.dist(anchor, centre) <= PATCH_REUSE_NM:
                return anchor, patch
        patch = self.__lattice_patch(self.__seed * 1000 + len(self.patches))
        patch.focus_c10_nm = self.focus_c10_nm + float(self.sample.height_nm(centre))
        self.patches.append((centre, patch))
        return self.patches[-1]

    @staticmethod
    def __aim(anchored: tuple[tuple[float, float], TwinSample], viewed_nm: _NDArray) -> TwinSample:
        """Point the patch's own stage so scan-field ``q`` shows the sample point ``viewed + q``."""
        anchor, patch = anchored
        patch.stage_offset_nm = (anchor[0] - float(viewed_nm[0]), anchor[1] - float(viewed_nm[1]))
        return patch

    def render_frame(self, frame: ScanFrame, pixel_time_us: float, probe: ProbeConditions, channels: typing.Sequence[str] = ("HAADF",)) -> dict[str, _NDArray]:
        """A survey: Poisson counts of the film, objects and holes where the stage really is; defocus blurs; atoms on a flake at high magnification."""
        with self._lock:
            self.__follow_stage()
            viewed = self.viewed_point_nm()
            self.__patch_in_view = self.__patch_at(viewed + numpy.asarray(frame.center_nm), frame.fov_nm)
            if self.__patch_in_view is not None:
                # the patch's own clock is this sample's: it advances it and counts its electrons
                return self.__aim(self.__patch_in_view, viewed).render_frame(frame, pixel_time_us, probe, channels)
            duration = frame.shape[0] * frame.shape[1] * pixel_time_us * 1e-6
            start = self.clock.advance(duration)
            electrons = probe.electrons_per_s * pixel_time_us * 1e-6
            self._electrons += electrons * frame.shape[0] * frame.shape[1]
            if electrons <= 0:
                return {c: numpy.zeros(frame.shape, numpy.float32) for c in channels}
            origin = self.viewed_point_nm(start + 0.5 * duration)
            centre = origin + numpy.asarray(frame.center_nm)
            # the grid square is not flat: its height adds to the tilt the glue sets
            defocus = self.defocus_from_focus_nm(probe, centre) - self.sample.height_nm(centre)
            blur = float(defocus_blur_nm(defocus, probe.convergence_semi_angle_rad))
            signal = self.sample.render(frame, offset_nm=(float(origin[0]), float(origin[1])), blur_nm=blur)
            out: dict[str, _NDArray] = {}
            for channel in channels:
                scale = 1.0 if channel == "HAADF" else 2.5 if channel == "MAADF" else 0.0
                out[channel] = self._rng.poisson(signal * electrons * DETECTOR_YIELD * scale).astype(numpy.float32)
            return out

    def dwell(self, positions_nm: numpy.typing.ArrayLike, sample_time_s: float, probe: ProbeConditions) -> dict[str, _NDArray]:
        """ADF counts while the probe dwells at scan-field positions (N, 2); on the atoms of the patch last imaged, if any."""
        with self._lock:
            self.__follow_stage()
            if self.__patch_in_view is not None:
                return self.__aim(self.__patch_in_view, self.viewed_point_nm()).dwell(positions_nm, sample_time_s, probe)
            p = numpy.atleast_2d(numpy.asarray(positions_nm, dtype=float))
            start = self.clock.advance(p.shape[0] * sample_time_s)
            electrons = probe.electrons_per_s * sample_time_s
            self._electrons += electrons * p.shape[0]
            origin = self.viewed_point_nm(start)
            # a parked probe dwells on one point: the film is drawn once per distinct 0.1 nm spot, not per sample
            spots, which = numpy.unique(numpy.round(p / 0.1), axis=0, return_inverse=True)
            levels = numpy.array([self.sample.render(ScanFrame((1, 1), 1.0), offset_nm=(float(origin[0] + 0.1 * y), float(origin[1] + 0.1 * x)))[0, 0]
                                  for y, x in spots])[which.reshape(-1)]
            expected = levels * electrons * DETECTOR_YIELD
            return {"HAADF": self._rng.poisson(expected).astype(numpy.float32), "MAADF": self._rng.poisson(2.5 * expected).astype(numpy.float32)}

    def spectrum(self, position_nm: typing.Sequence[float], exposure_s: float, probe: ProbeConditions, energies_eV: _NDArray) -> _NDArray:
        """Core-loss EELS at the parked probe (see :func:`core_loss_counts`)."""
        with self._lock:
            self.__follow_stage()
            start = self.clock.advance(exposure_s)
            electrons = probe.electrons_per_s * exposure_s
            self._electrons += electrons
            where = self.viewed_point_nm(start) + numpy.asarray(position_nm, dtype=float)
            below = self.sample.object_at((float(where[0]), float(where[1])))
            self.spectra.append(((float(where[0]), float(where[1])), below))
            return self._rng.poisson(core_loss_counts(below, numpy.asarray(energies_eV), electrons)).astype(numpy.float32)

    def diffraction(self, position_nm: typing.Sequence[float], exposure_s: float, probe: ProbeConditions, shape: tuple[int, int],
                    pixel_mrad: float) -> _NDArray | None:
        """No diffraction model: usim draws its own Ronchigram."""
        return None

    @property
    def electrons_received(self) -> float:
        """Total electrons put on the grid square so far, its lattice patches' included."""
        with self._lock:
            return self._electrons + sum(patch.electrons_received for _, patch in self.patches)
