"""Bad inputs at the public boundary: every one gets a clear error, raised by our code.

Each row of ``CASES`` is ``(id, call, exception type, message regex)``. The call
must raise that exception (a ``ValueError`` for a bad value, a ``TypeError`` for
a wrong type, a ``FileNotFoundError`` for a missing file) from inside
``nion_autoem*`` -- not from deep inside numpy, torch or the json module -- and
the message must name the bad argument and say what would be right, in the
style ``"q must be a whole number >= 1, got -3"``. Every call runs under a
deadline, so a bad input that hangs fails instead of stalling the suite. A
second, small table (``ACCEPTED``) checks that valid edge inputs -- whole
numbers given as floats, numpy scalars, an unlimited dose budget, NaN
coordinates in the geometry conversions, a lattice given by name -- still work.

Before the fixes that came with this table, 77 of the 307 bad inputs got a
clear error; 51 an unclear one (a bare ``KeyError``, ``AttributeError`` or a
message naming no argument), 41 crashed deep inside numpy, torch, json or
pathlib, 136 were silently accepted (or gave a wrong result) and 2 hung or
exhausted memory. All 307 now get a clear error.

=======================  =====  =============================  ===================================================================
Area                     Cases  Before: clear/unclear/deep/     Kinds of bad input
                                silent/hang
=======================  =====  =============================  ===================================================================
foundation: geometry        20  7 / 8 / 1 / 4 / 0              fractional, zero, string, bool and None pixel counts; NaN, negative,
                                                               string and bool field of view; NaN, None and 3-long centres; infinite
                                                               rotation; wrong-shape and string coordinates; margin out of range;
                                                               ``from_dict`` with missing keys, fractional shape, a list
foundation: xdata           18  5 / 7 / 1 / 5 / 0              not an xdata; 3D; energy units; negative pixel size; NaN offsets;
                                                               broken scan-frame metadata; shape mismatch; string image; not a
                                                               ScanFrame; 3D spectrum; zero/NaN energy axis; negative, NaN and string
                                                               dwell times; zero angle scale; wrong ndim
DKL agent and config        50  10 / 6 / 3 / 31 / 0            NaN, inf, string, complex, 2D, non-square and single patches; NaN,
                                                               mis-shaped and miscounted positions; NaN latents; negative and NaN
                                                               dose costs (negative dwell x current); dict config; unknown
                                                               acquisition; negative/zero/fractional counts, seeds, budgets, radii;
                                                               config changed after construction; ``q`` -3/0/1.5/'2'/True;
                                                               ``pending`` -1/N/1.7/'a' (before and after the first model);
                                                               ``observe`` indices 1.7/-1/True/2D and NaN/inf/string values,
                                                               length mismatch
DKL candidates, embedding   20  13 / 1 / 0 / 5 / 1             NaN, 3D and string surveys; patch size 1, 2.5, too large; stride 0,
                                                               2.5; unknown normalization; NaN, edge and mis-shaped positions; ring
                                                               width 1e-9 (exhausted memory); NaN smoothing; zero counts; patch size
                                                               mismatch; transform before fit
DKL scalarizers             16  4 / 1 / 0 / 11 / 0             reversed and NaN bands; zero/NaN axis calibration; decreasing
                                                               energies; negative channel count; NaN and 2D spectra; NaN and 1D
                                                               diffraction frames; NaN centre; non-callable custom function, custom
                                                               results 'abc' and NaN
DKL acquisition, batch,     45  3 / 1 / 16 / 25 / 0            NaN incumbent; mean/std shape mismatch; NaN means; negative and NaN
constraints, posterior,                                        beta; step and candidate counts of 0; delta 1.5; indices -1, N, 1.5;
stopping, calibration,                                         zero subsets; no generator; wrong mask length and dtype; missing
surrogate, synthetic                                           positions; NaN budgets and radii; odd centres; negative variances;
                                                               level 1.5; window -1; NaN latents; head_dim 0; iterations -5;
                                                               negative learning rate; fractional shape; zero grains; negative
                                                               noise; fraction 1.5; mis-shaped probe positions
ELIT find_atoms, ensemble   16  7 / 1 / 2 / 6 / 0              NaN, RGB, tiny, constant and complex frames; threshold 1.5 and '0.5';
                                                               string flags; unknown model name; int ensemble; class-name count;
                                                               not a network; zero members; one class; member index out of range
ELIT model files            23  3 / 8 / 9 / 3 / 0              truncated, empty, non-UTF-8 and non-object JSON; missing keys; wrong
                                                               sha256; missing weights; truncated weights; wrong tensor shapes;
                                                               renamed tensors; a tensor instead of a state dict; class names vs
                                                               network; text and newer format versions; zero members; missing network
                                                               key; weights outside the folder; broken calibration and imaging-range
                                                               metadata; int path; saving a non-ensemble
ELIT iteration, training    23  1 / 4 / 1 / 17 / 0             steps -5 and 2.5; batch 0; crop 50; learning rate -1e-3 and NaN;
                                                               shares and fractions outside [0, 1]; negative quota and seed; string
                                                               flag; unknown and int lattice; dict config; frame smaller than the
                                                               crop; string ensemble; training config; ``fit`` with steps -5 and
                                                               one share too many
ELIT synthetic, lattices    25  1 / 4 / 1 / 19 / 0             fractional and tiny shapes; unknown lattice; seed -1; negative label
                                                               radius; zero, negative and NaN imaging conditions; fractional blob
                                                               count; reversed, zero and NaN ranges; scalar ranges; negative peak
                                                               counts; zero pixel size; reversed and >1 concentrations; zero lattice
                                                               constant; Z 30.5; unknown species; parallel cell; unknown host; no atoms
ELIT atoms, evaluation      16  2 / 3 / 5 / 6 / 0              3D probabilities; class-name count; threshold 0; NaN probabilities;
                                                               broken calibration dict; negative, NaN and mis-shaped matching input;
                                                               class-count mismatch; zero spacing; border without shape; empty and
                                                               incomplete score lists; zero bins; length mismatch; two features
targeting                   35  21 / 7 / 2 / 4 / 1             rising, NaN and string rates; string and zero thresholds; NaN, string
                                                               and 2D samples; zero samples; probability 1.5 and '0.01'; unknown
                                                               method; 10**6 cells (exhausted memory); string and empty traces;
                                                               fractional blocks; drift settings and times; 3-long offsets;
                                                               upsampling 10**9 (hung); zero pixel size; NaN frames; path order 5,
                                                               -1, 0.5; NaN positions; negative passes; int kind; class count;
                                                               zero, string and NaN sizes; negative capture distance
**total**                  307  77 / 51 / 41 / 136 / 2
=======================  =====  =============================  ===================================================================
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import pathlib
import re
import signal
import threading
import typing

import numpy
import numpy.typing
import pytest
import torch
from nion.data import Calibration
from nion.data import DataAndMetadata

from nion_autoem import xdata
from nion_autoem.geometry import ScanFrame
from nion_autoem_checks.shipped import sha256_of
from nion_autoem_dkl import acquisition as acq
from nion_autoem_dkl import batch
from nion_autoem_dkl import calibration as dkl_calibration
from nion_autoem_dkl import candidates
from nion_autoem_dkl import constraints
from nion_autoem_dkl import embedding
from nion_autoem_dkl import scalarizers as sc
from nion_autoem_dkl import stopping
from nion_autoem_dkl import surrogate
from nion_autoem_dkl import synthetic as dkl_synthetic
from nion_autoem_dkl.agent import AgentConfig
from nion_autoem_dkl.agent import DKLAgent
from nion_autoem_dkl.posterior import Posterior
from nion_autoem_elit import api
from nion_autoem_elit import atoms
from nion_autoem_elit import calibration as elit_calibration
from nion_autoem_elit import ensemble
from nion_autoem_elit import evaluation
from nion_autoem_elit import iterative
from nion_autoem_elit import lattices
from nion_autoem_elit import model
from nion_autoem_elit import storage
from nion_autoem_elit import synthetic
from nion_autoem_elit import training
from nion_autoem_targeting import DriftEstimator
from nion_autoem_targeting import PoissonCusum
from nion_autoem_targeting import detect_drop
from nion_autoem_targeting import estimate_rate
from nion_autoem_targeting import false_alarm_probability
from nion_autoem_targeting import in_region
from nion_autoem_targeting import measure_shift
from nion_autoem_targeting import near_line
from nion_autoem_targeting import nearest_to
from nion_autoem_targeting import path_length
from nion_autoem_targeting import select_targets
from nion_autoem_targeting import shortest_path
from nion_autoem_targeting import threshold_for_false_alarm

_NDArray = numpy.typing.NDArray[typing.Any]
_ROOT = pathlib.Path(__file__).resolve().parents[1]
_OUR_PACKAGES = tuple(str(_ROOT / name) for name in ("nion_autoem", "nion_autoem_dkl", "nion_autoem_elit", "nion_autoem_targeting"))
_DEADLINE_S = 20.0
NAN = math.nan
INF = math.inf


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input: what to call, what it must raise, and what the message must say."""

    id: str
    call: typing.Callable[[pathlib.Path], object]
    error: type[BaseException]
    message: str


def bad(value: object) -> typing.Any:
    """A deliberately ill-typed argument (keeps mypy quiet without ``type: ignore``)."""
    return value


# -- small, cheap fixtures (built on demand) ----------------------------------------------------


@functools.cache
def _candidates() -> tuple[_NDArray, _NDArray]:
    rng = numpy.random.default_rng(0)
    return rng.normal(size=(12, 8, 8)), rng.uniform(0.0, 100.0, (12, 2))


def _patches(**changes: float) -> _NDArray:
    patches = _candidates()[0].copy()
    if "nan" in changes:
        patches[3, 2, 2] = NAN
    if "inf" in changes:
        patches[5, 0, 0] = INF
    return patches


def _positions() -> _NDArray:
    return _candidates()[1].copy()


def _config(**settings: typing.Any) -> AgentConfig:
    return AgentConfig(n_initial=3, full_iterations=2, warm_iterations=1, **settings)


def _agent() -> DKLAgent:
    return DKLAgent(_patches(), _positions(), _config())


def _fitted_agent() -> DKLAgent:
    agent = _agent()
    agent.observe([0, 1, 2], [0.1, 0.5, 0.2])
    return agent


def _agent_with_mutated_config() -> DKLAgent:
    config = _config()
    config.refit_every = 0
    return DKLAgent(_patches(), _positions(), config)


def _posterior() -> Posterior:
    return Posterior.independent(numpy.zeros(4), numpy.ones(4))


def _gp() -> surrogate.CandidateGP:
    return surrogate.CandidateGP(numpy.linspace(0.0, 1.0, 10)[:, None])


def _gp_with_data() -> surrogate.CandidateGP:
    gp = _gp()
    gp.add([0, 5, 9], [0.0, 1.0, 0.0])
    return gp


def _fitted_embedding() -> embedding.PatchEmbedding:
    return embedding.PatchEmbedding(n_components=2).fit(_patches())


def _sample() -> dkl_synthetic.SyntheticSample:
    return dkl_synthetic.SyntheticSample(numpy.zeros((4, 4)), numpy.zeros((0, 2)), numpy.zeros(0, bool), numpy.zeros((0, 2)),
                                         numpy.ones((1, 2)), numpy.ones(1), 5.0)


FRAME = ScanFrame((4, 4), 1.0)


def _xdata(data: _NDArray, units: str = "nm", scale: float = 0.5, offset: float = 0.0,
           metadata: dict[str, typing.Any] | None = None) -> DataAndMetadata.DataAndMetadata:
    calibrations = [Calibration.Calibration(offset, scale, units) for _ in range(data.ndim)]
    return DataAndMetadata.new_data_and_metadata(data, dimensional_calibrations=calibrations, metadata=metadata or {})


def _image(size: int = 64) -> _NDArray:
    return numpy.random.default_rng(1).random((size, size))


@functools.cache
def _tiny_ensemble() -> ensemble.Ensemble:
    torch.manual_seed(0)
    return ensemble.Ensemble(model.EnsembleUNet(2, 3, 4), ("background", "A", "B"))


def _saved(tmp: pathlib.Path) -> pathlib.Path:
    """A valid saved model in ``tmp``, written by the storage module itself; returns its metadata path."""
    return storage.save_ensemble(_tiny_ensemble(), tmp / "tiny")


def _resign(json_path: pathlib.Path) -> None:
    """Make the recorded sha256 match the weights again, so the check under test is reached."""
    metadata = json.loads(json_path.read_text())
    metadata["weights_sha256"] = sha256_of(json_path.with_suffix(".pt"))
    json_path.write_text(json.dumps(metadata))


def _with_json_text(tmp: pathlib.Path, text: str | bytes) -> pathlib.Path:
    path = _saved(tmp)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _truncated_json(tmp: pathlib.Path) -> pathlib.Path:
    path = _saved(tmp)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    return path


def _edited(tmp: pathlib.Path, edit: typing.Callable[[dict[str, typing.Any]], object]) -> pathlib.Path:
    path = _saved(tmp)
    metadata = json.loads(path.read_text())
    edit(metadata)
    path.write_text(json.dumps(metadata))
    return path


def _truncated_weights(tmp: pathlib.Path) -> pathlib.Path:
    path = _saved(tmp)
    weights = path.with_suffix(".pt")
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    _resign(path)
    return path


def _replaced_weights(tmp: pathlib.Path, payload: object) -> pathlib.Path:
    path = _saved(tmp)
    torch.save(payload, path.with_suffix(".pt"))
    _resign(path)
    return path


def _renamed_tensor(tmp: pathlib.Path) -> pathlib.Path:
    state = dict(_tiny_ensemble().network.state_dict())
    state["head_bias_old"] = state.pop("head_bias")
    return _replaced_weights(tmp, state)


def _corrupted_weights(tmp: pathlib.Path) -> pathlib.Path:
    path = _saved(tmp)
    weights = path.with_suffix(".pt")
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    return path


def _missing_weights(tmp: pathlib.Path) -> pathlib.Path:
    path = _saved(tmp)
    path.with_suffix(".pt").unlink()
    return path


def _load(make: typing.Callable[[pathlib.Path], pathlib.Path]) -> typing.Callable[[pathlib.Path], object]:
    return lambda tmp: storage.load_ensemble(make(tmp))


def _set(key: str, value: object) -> typing.Callable[[dict[str, typing.Any]], object]:
    return lambda metadata: metadata.__setitem__(key, value)


def _drop(key: str) -> typing.Callable[[dict[str, typing.Any]], object]:
    return lambda metadata: metadata.pop(key)


def _set_network(key: str, value: object) -> typing.Callable[[dict[str, typing.Any]], object]:
    return lambda metadata: metadata["network"].__setitem__(key, value)


def _drop_network(key: str) -> typing.Callable[[dict[str, typing.Any]], object]:
    return lambda metadata: metadata["network"].pop(key)


def _pool() -> training.TrainingPool:
    return training.TrainingPool(numpy.zeros((1, 32, 32), numpy.float32), numpy.zeros((1, 32, 32), numpy.uint8))


def _fit(steps: object = 2, shares: typing.Sequence[float] = (1.0,)) -> list[float]:
    return training.fit(model.EnsembleUNet(2, 3, 4), [_pool()], shares, torch.ones(3), steps=bad(steps), batch_per_member=1,
                        learning_rate=1e-3, swa_fraction=0.5, swa_learning_rate=1e-3, seed=0)


def _lattice(**changes: typing.Any) -> lattices.LatticeSpec:
    fields: dict[str, typing.Any] = {
        "name": "test",
        "cell_A": ((2.8, 0.0), (0.0, 2.8)),
        "basis": ((0.0, 0.0, "site"),),
        "hosts": {"site": "X"},
        "substitutions": {"site": (lattices.Substitution(None, (0.0, 0.05)),)},
        "species": (lattices.ColumnSpecies("X", (30,)),),
    }
    fields.update(changes)
    return lattices.LatticeSpec(**fields)


def _score(found: int = 2, found_classes: int = 2, nearest: float = 10.0, border: float = 0.0) -> dict[str, typing.Any]:
    return evaluation.score_frame(numpy.zeros((found, 2)), numpy.ones(found_classes, int), numpy.zeros((2, 2)), numpy.ones(2, int),
                                  nearest, ("background", "A"), border_px=border)


# -- the table -----------------------------------------------------------------------------------

INDICES_12 = r"\[0, 11\]"
SPECTRUM = numpy.exp(-0.5 * ((numpy.arange(40) * 0.25 - 5.0) / 0.5) ** 2)
ATOMS = [[0.0, 0.0], [0.0, 0.18], [0.0, 0.32], [1.0, 1.0]]

GEOMETRY = [
    Case("geometry-shape-fractional", lambda tmp: ScanFrame(bad((2.7, 3.9)), 1.0), ValueError,
         r"shape must be two whole pixel counts >= 1 \(rows, columns\), got \(2\.7, 3\.9\)"),
    Case("geometry-shape-zero", lambda tmp: ScanFrame((0, 4), 1.0), ValueError, r"shape must be two whole pixel counts >= 1 \(rows, columns\), got \(0, 4\)"),
    Case("geometry-shape-one-number", lambda tmp: ScanFrame(bad((4,)), 1.0), ValueError, r"shape must be two whole pixel counts >= 1 \(rows, columns\), got \(4,\)"),
    Case("geometry-shape-strings", lambda tmp: ScanFrame(bad(("4", "4")), 1.0), TypeError, r"shape must be two whole pixel counts >= 1 \(rows, columns\), got \('4', '4'\)"),
    Case("geometry-shape-bool", lambda tmp: ScanFrame(bad((True, 4)), 1.0), TypeError, r"shape must be two whole pixel counts >= 1 \(rows, columns\), got \(True, 4\)"),
    Case("geometry-shape-none", lambda tmp: ScanFrame(bad(None), 1.0), TypeError, r"shape must be two whole pixel counts >= 1 \(rows, columns\), got None"),
    Case("geometry-fov-negative", lambda tmp: ScanFrame((4, 4), -1.0), ValueError, r"fov_nm must be a positive finite number of nanometres, got -1\.0"),
    Case("geometry-fov-nan", lambda tmp: ScanFrame((4, 4), NAN), ValueError, r"fov_nm must be a positive finite number of nanometres, got nan"),
    Case("geometry-fov-string", lambda tmp: ScanFrame((4, 4), bad("8")), TypeError, r"fov_nm must be a positive finite number of nanometres, got '8'"),
    Case("geometry-fov-bool", lambda tmp: ScanFrame((4, 4), bad(True)), TypeError, r"fov_nm must be a positive finite number of nanometres, got True"),
    Case("geometry-center-nan", lambda tmp: ScanFrame((4, 4), 1.0, (NAN, 0.0)), ValueError, r"center_nm must be a finite \(y, x\) pair in nm, got \(nan, 0\.0\)"),
    Case("geometry-center-none", lambda tmp: ScanFrame((4, 4), 1.0, bad(None)), TypeError, r"center_nm must be a finite \(y, x\) pair in nm, got None"),
    Case("geometry-center-three", lambda tmp: ScanFrame((4, 4), 1.0, bad((0.0, 0.0, 0.0))), ValueError,
         r"center_nm must be a finite \(y, x\) pair in nm, got \(0\.0, 0\.0, 0\.0\)"),
    Case("geometry-rotation-inf", lambda tmp: ScanFrame((4, 4), 1.0, rotation_rad=INF), ValueError, r"rotation_rad must be a finite angle in radians, got inf"),
    Case("geometry-pixel-three-coordinates", lambda tmp: FRAME.pixel_to_nm([1.0, 2.0, 3.0]), ValueError,
         r"pixel must be numeric \(row, column\) pairs of shape \(\.\.\., 2\), got shape \(3,\)"),
    Case("geometry-position-strings", lambda tmp: FRAME.nm_to_fraction(bad(["a", "b"])), TypeError,
         r"position_nm must be numeric \(y, x\) nm pairs of shape \(\.\.\., 2\), got an array of dtype <U1"),
    Case("geometry-margin-too-large", lambda tmp: FRAME.contains_nm((0.0, 0.0), margin=0.6), ValueError,
         r"margin must be a fraction of the field in \[0, 0\.5\), got 0\.6"),
    Case("geometry-from-dict-missing-fov", lambda tmp: ScanFrame.from_dict({"shape": [4, 4]}), ValueError,
         r"d must be a scan frame dict with 'shape' and 'fov_nm' .*missing 'fov_nm'"),
    Case("geometry-from-dict-fractional-shape", lambda tmp: ScanFrame.from_dict({"shape": [2.7, 3.9], "fov_nm": 1.0}), ValueError,
         r"shape must be two whole pixel counts >= 1 \(rows, columns\), got \(2\.7, 3\.9\)"),
    Case("geometry-from-dict-list", lambda tmp: ScanFrame.from_dict(bad([4, 4])), TypeError, r"d must be a scan frame dict with 'shape' and 'fov_nm' .*got list"),
]

XDATA = [
    Case("xdata-frame-from-ndarray", lambda tmp: xdata.frame_from_xdata(bad(numpy.zeros((4, 4)))), TypeError,
         r"xdata must be a DataAndMetadata image with spatial calibrations, got ndarray"),
    Case("xdata-frame-3d", lambda tmp: xdata.frame_from_xdata(_xdata(numpy.zeros((2, 4, 4)))), ValueError,
         r"xdata must be a 2D image \(rows, columns\), got shape \(2, 4, 4\)"),
    Case("xdata-frame-energy-units", lambda tmp: xdata.frame_from_xdata(_xdata(numpy.zeros((4, 4)), units="eV")), ValueError,
         r"xdata's axes must both have a spatial calibration in nm \(or Å, µm\), got 'eV'/'eV'"),
    Case("xdata-frame-negative-scale", lambda tmp: xdata.frame_from_xdata(_xdata(numpy.zeros((4, 4)), scale=-0.5)), ValueError,
         r"xdata's pixel size must be a positive finite number of nm, got -0\.5 nm"),
    Case("xdata-frame-nan-offset", lambda tmp: xdata.frame_from_xdata(_xdata(numpy.zeros((4, 4)), offset=NAN)), ValueError,
         r"xdata's calibration offsets must be finite, got \(nan, nan\)"),
    Case("xdata-frame-broken-scan-frame", lambda tmp: xdata.frame_from_xdata(_xdata(numpy.zeros((4, 4)), metadata={"nion_autoem": {"scan_frame": {"shape": [4, 4]}}})),
         ValueError, r"xdata's nion_autoem\.scan_frame metadata must describe a scan frame: .*missing 'fov_nm'"),
    Case("xdata-image-shape-mismatch", lambda tmp: xdata.image_xdata(numpy.zeros((4, 5)), FRAME), ValueError,
         r"image must have the scan frame's shape \(4, 4\), got \(4, 5\)"),
    Case("xdata-image-strings", lambda tmp: xdata.image_xdata(bad("abc"), FRAME), TypeError, r"image must be a real numeric array, got dtype <U3"),
    Case("xdata-image-frame-tuple", lambda tmp: xdata.image_xdata(numpy.zeros((4, 4)), bad((4, 4))), TypeError, r"frame must be a ScanFrame, got tuple"),
    Case("xdata-spectrum-3d", lambda tmp: xdata.spectrum_xdata(numpy.zeros((2, 2, 2)), 0.0, 1.0), ValueError,
         r"spectrum must be 1D \(channels\) or 2D \(spectra, channels\), got shape \(2, 2, 2\)"),
    Case("xdata-spectrum-zero-scale", lambda tmp: xdata.spectrum_xdata(numpy.zeros(8), 0.0, 0.0), ValueError,
         r"scale_eV must be a non-zero finite number of eV per channel, got 0\.0"),
    Case("xdata-spectrum-nan-offset", lambda tmp: xdata.spectrum_xdata(numpy.zeros(8), NAN, 1.0), ValueError, r"offset_eV must be a finite energy in eV, got nan"),
    Case("xdata-trace-negative-dwell", lambda tmp: xdata.trace_xdata(numpy.ones(4), -1.0), ValueError,
         r"sample_time_us must be a positive finite dwell time in µs, got -1\.0"),
    Case("xdata-trace-nan-dwell", lambda tmp: xdata.trace_xdata(numpy.ones(4), NAN), ValueError, r"sample_time_us must be a positive finite dwell time in µs, got nan"),
    Case("xdata-trace-string-dwell", lambda tmp: xdata.trace_xdata(numpy.ones(4), bad("10")), TypeError,
         r"sample_time_us must be a positive finite dwell time in µs, got '10'"),
    Case("xdata-camera-zero-scale", lambda tmp: xdata.camera_xdata(numpy.zeros((4, 4)), 0.0), ValueError,
         r"scale_mrad must be a positive finite number of mrad per pixel, got 0\.0"),
    Case("xdata-camera-1d", lambda tmp: xdata.camera_xdata(numpy.zeros(4)), ValueError, r"frame must be a 2D camera frame \(rows, columns\), got shape \(4,\)"),
    Case("xdata-line-2d", lambda tmp: xdata.line_xdata(numpy.zeros((2, 2)), "step"), ValueError, r"values must be a 1D curve, got shape \(2, 2\)"),
]

DKL_AGENT = [
    Case("dkl-patches-nan", lambda tmp: DKLAgent(_patches(nan=1), _positions()), ValueError,
         r"patches must be a finite real array of shape \(N, P, P\), got 1 NaN or infinite value"),
    Case("dkl-patches-inf", lambda tmp: DKLAgent(_patches(inf=1), _positions()), ValueError,
         r"patches must be a finite real array of shape \(N, P, P\), got 1 NaN or infinite value"),
    Case("dkl-patches-2d", lambda tmp: DKLAgent(_patches().reshape(12, 64), _positions()), ValueError,
         r"patches must have shape \(N, P, P\) with square patches, got \(12, 64\)"),
    Case("dkl-patches-not-square", lambda tmp: DKLAgent(_patches()[:, :, :6], _positions()), ValueError,
         r"patches must have shape \(N, P, P\) with square patches, got \(12, 8, 6\)"),
    Case("dkl-patches-strings", lambda tmp: DKLAgent(numpy.full((12, 8, 8), "a"), _positions()), TypeError,
         r"patches must be a finite real array of shape \(N, P, P\), got an array of dtype <U1"),
    Case("dkl-patches-complex", lambda tmp: DKLAgent(_patches() + 1j, _positions()), TypeError,
         r"patches must be a finite real array of shape \(N, P, P\), got an array of dtype complex128"),
    Case("dkl-patches-one", lambda tmp: DKLAgent(_patches()[:1], _positions()[:1]), ValueError, r"patches must hold at least 2 patches to fit an embedding, got 1"),
    Case("dkl-positions-nan", lambda tmp: DKLAgent(_patches(), numpy.where(numpy.arange(24).reshape(12, 2) == 5, NAN, _positions())), ValueError,
         r"positions must be finite \(row, column\) pixel positions of shape \(N, 2\), got 1 NaN or infinite value"),
    Case("dkl-positions-three-columns", lambda tmp: DKLAgent(_patches(), numpy.zeros((12, 3))), ValueError, r"positions must have shape \(N, 2\), got \(12, 3\)"),
    Case("dkl-positions-count", lambda tmp: DKLAgent(_patches(), _positions()[:11]), ValueError, r"positions must have one row per patch \(12\), got 11"),
    Case("dkl-dose-cost-negative", lambda tmp: DKLAgent(_patches(), _positions(), dose_cost=numpy.full(12, -0.02 * 1e-10)), ValueError,
         r"dose_cost must be a finite dose >= 0 for every candidate, got -2e-12 at candidate 0"),
    Case("dkl-dose-cost-nan", lambda tmp: DKLAgent(_patches(), _positions(), dose_cost=numpy.where(numpy.arange(12) == 4, NAN, 1.0)), ValueError,
         r"dose_cost must be a finite dose >= 0 for every candidate, got nan at candidate 4"),
    Case("dkl-dose-cost-shape", lambda tmp: DKLAgent(_patches(), _positions(), dose_cost=numpy.ones(11)), ValueError, r"dose_cost must have shape \(12,\), got \(11,\)"),
    Case("dkl-latent-nan", lambda tmp: DKLAgent(_patches(), _positions(), latent=numpy.where(numpy.arange(24).reshape(12, 2) == 0, NAN, 1.0)), ValueError,
         r"latent must be a finite real array of shape \(N, d\), got 1 NaN or infinite value"),
    Case("dkl-config-dict", lambda tmp: DKLAgent(_patches(), _positions(), bad({"n_initial": 3})), TypeError, r"config must be an AgentConfig or None, got dict"),
    Case("dkl-config-unknown-acquisition", lambda tmp: AgentConfig(acquisition=bad("ei")), ValueError,
         r"acquisition must be one of \('log_ei', 'ucb', 'thompson', 'max_uncertainty'\), got 'ei'"),
    Case("dkl-config-n-initial-negative", lambda tmp: AgentConfig(n_initial=-1), ValueError, r"n_initial must be a whole number >= 0, got -1"),
    Case("dkl-config-refit-every-zero", lambda tmp: AgentConfig(refit_every=0), ValueError, r"refit_every must be a whole number >= 1, got 0"),
    Case("dkl-config-warm-iterations-negative", lambda tmp: AgentConfig(warm_iterations=-5), ValueError, r"warm_iterations must be a whole number >= 0, got -5"),
    Case("dkl-config-full-iterations-fractional", lambda tmp: AgentConfig(full_iterations=bad(2.5)), ValueError, r"full_iterations must be a whole number >= 0, got 2\.5"),
    Case("dkl-config-head-dim-zero", lambda tmp: AgentConfig(head_dim=0), ValueError, r"head_dim must be None or a whole number >= 1, got 0"),
    Case("dkl-config-latent-dim-zero", lambda tmp: AgentConfig(latent_dim=0), ValueError, r"latent_dim must be None or a whole number >= 1, got 0"),
    Case("dkl-config-exclusion-radius-nan", lambda tmp: AgentConfig(exclusion_radius=NAN), ValueError, r"exclusion_radius must be a finite number of pixels >= 0, got nan"),
    Case("dkl-config-dose-budget-negative", lambda tmp: AgentConfig(dose_budget=-1.0), ValueError, r"dose_budget must be a dose >= 0 \(inf for no limit\), got -1\.0"),
    Case("dkl-config-dose-budget-nan", lambda tmp: AgentConfig(dose_budget=NAN), ValueError, r"dose_budget must be a dose >= 0 \(inf for no limit\), got nan"),
    Case("dkl-config-ucb-scale-negative", lambda tmp: AgentConfig(ucb_scale=-0.2), ValueError, r"ucb_scale must be a finite number >= 0, got -0\.2"),
    Case("dkl-config-thompson-subset-zero", lambda tmp: AgentConfig(thompson_subset=0), ValueError, r"thompson_subset must be a whole number >= 1, got 0"),
    Case("dkl-config-stop-threshold-nan", lambda tmp: AgentConfig(stop_threshold=NAN), ValueError, r"stop_threshold must be None or a finite score, got nan"),
    Case("dkl-config-stop-patience-zero", lambda tmp: AgentConfig(stop_patience=0), ValueError, r"stop_patience must be a whole number >= 1, got 0"),
    Case("dkl-config-coverage-window-negative", lambda tmp: AgentConfig(coverage_window=-1), ValueError, r"coverage_window must be a whole number >= 1, got -1"),
    Case("dkl-config-seed-negative", lambda tmp: AgentConfig(seed=-1), ValueError, r"seed must be a whole number >= 0, got -1"),
    Case("dkl-config-mutated", lambda tmp: _agent_with_mutated_config(), ValueError, r"refit_every must be a whole number >= 1, got 0"),
    Case("dkl-suggest-q-negative", lambda tmp: _agent().suggest(q=-3), ValueError, r"q must be a whole number >= 1, got -3"),
    Case("dkl-suggest-q-zero", lambda tmp: _agent().suggest(q=0), ValueError, r"q must be a whole number >= 1, got 0"),
    Case("dkl-suggest-q-fractional", lambda tmp: _agent().suggest(q=bad(1.5)), ValueError, r"q must be a whole number >= 1, got 1\.5"),
    Case("dkl-suggest-q-string", lambda tmp: _agent().suggest(q=bad("2")), TypeError, r"q must be a whole number >= 1, got '2'"),
    Case("dkl-suggest-q-bool", lambda tmp: _agent().suggest(q=bad(True)), TypeError, r"q must be a whole number >= 1, got True"),
    Case("dkl-suggest-pending-negative", lambda tmp: _agent().suggest(pending=[-1]), ValueError, rf"pending must be whole-number candidate indices in {INDICES_12}, got \[-1\]"),
    Case("dkl-suggest-pending-too-large", lambda tmp: _agent().suggest(pending=[12]), ValueError, rf"pending must be whole-number candidate indices in {INDICES_12}, got \[12\]"),
    Case("dkl-suggest-pending-fractional", lambda tmp: _agent().suggest(pending=bad([1.7])), ValueError,
         rf"pending must be whole-number candidate indices in {INDICES_12}, got \[1\.7\]"),
    Case("dkl-suggest-pending-strings", lambda tmp: _agent().suggest(pending=bad(["a"])), TypeError,
         rf"pending must be whole-number candidate indices in {INDICES_12}, got an array of dtype <U1"),
    Case("dkl-suggest-pending-negative-with-model", lambda tmp: _fitted_agent().suggest(pending=[-1]), ValueError,
         rf"pending must be whole-number candidate indices in {INDICES_12}, got \[-1\]"),
    Case("dkl-observe-fractional-index", lambda tmp: _agent().observe(bad([1.7]), [0.5]), ValueError,
         rf"indices must be whole-number candidate indices in {INDICES_12}, got \[1\.7\]"),
    Case("dkl-observe-negative-index", lambda tmp: _agent().observe([-1], [0.5]), ValueError, rf"indices must be whole-number candidate indices in {INDICES_12}, got \[-1\]"),
    Case("dkl-observe-bool-index", lambda tmp: _agent().observe(bad([True]), [0.5]), TypeError,
         rf"indices must be whole-number candidate indices in {INDICES_12}, got an array of dtype bool"),
    Case("dkl-observe-2d-index", lambda tmp: _agent().observe(bad([[0]]), bad([[0.5]])), ValueError,
         r"indices must be a 1-D sequence of candidate indices, got shape \(1, 1\)"),
    Case("dkl-observe-length-mismatch", lambda tmp: _agent().observe([0, 1], [0.5]), ValueError, r"values must have one value per index \(2\), got 1"),
    Case("dkl-observe-nan-value", lambda tmp: _agent().observe([0], [NAN]), ValueError, r"values must be finite real measurements, got nan at position 0"),
    Case("dkl-observe-inf-value", lambda tmp: _agent().observe([0, 1], [0.0, INF]), ValueError, r"values must be finite real measurements, got inf at position 1"),
    Case("dkl-observe-string-value", lambda tmp: _agent().observe([0], bad(["abc"])), TypeError, r"values must be finite real measurements, got an array of dtype <U3"),
]

DKL_CANDIDATES = [
    Case("dkl-extract-nan-image", lambda tmp: candidates.extract_patches(numpy.where(numpy.eye(16) > 0, NAN, 0.0), 8), ValueError,
         r"image must be finite, got 16 NaN or infinite pixels"),
    Case("dkl-extract-3d-image", lambda tmp: candidates.extract_patches(numpy.zeros((2, 16, 16)), 8), ValueError,
         r"image must be a 2D array \(rows, columns\), got ndim=3 with shape \(2, 16, 16\)"),
    Case("dkl-extract-string-image", lambda tmp: candidates.extract_patches(numpy.full((16, 16), "a"), 8), TypeError, r"image must be a real-valued array, got dtype <U1"),
    Case("dkl-extract-patch-size-one", lambda tmp: candidates.extract_patches(numpy.zeros((16, 16)), 1), ValueError, r"patch_size must be a whole number >= 2, got 1"),
    Case("dkl-extract-patch-size-fractional", lambda tmp: candidates.extract_patches(numpy.zeros((16, 16)), bad(2.5)), ValueError,
         r"patch_size must be a whole number >= 2, got 2\.5"),
    Case("dkl-extract-patch-too-large", lambda tmp: candidates.extract_patches(numpy.zeros((16, 16)), 32), ValueError,
         r"patch_size must be at most the survey image's smaller side \(16\), got 32: it is larger than the survey image \(16, 16\)"),
    Case("dkl-extract-stride-zero", lambda tmp: candidates.extract_patches(numpy.zeros((16, 16)), 8, stride=0), ValueError, r"stride must be a whole number >= 1, got 0"),
    Case("dkl-extract-stride-fractional", lambda tmp: candidates.extract_patches(numpy.zeros((16, 16)), 8, stride=bad(2.5)), ValueError,
         r"stride must be a whole number >= 1, got 2\.5"),
    Case("dkl-extract-unknown-normalization", lambda tmp: candidates.extract_patches(numpy.zeros((16, 16)), 8, normalization=bad("zscore")), ValueError,
         r"normalization must be one of \('none', 'patch', 'global'\), got 'zscore'"),
    Case("dkl-extract-positions-nan", lambda tmp: candidates.extract_patches(numpy.zeros((32, 32)), 8, positions=numpy.array([[NAN, 16.0]])), ValueError,
         r"positions must be finite \(row, column\) pixel positions of shape \(K, 2\), got 1 NaN or infinite value"),
    Case("dkl-extract-positions-edge", lambda tmp: candidates.extract_patches(numpy.zeros((32, 32)), 8, positions=numpy.array([[2.0, 16.0]])), ValueError,
         r"positions must lie at least half a patch from the image edge: centres in rows \[4, 28\] and columns \[4, 28\] for patch_size=8, got 1 position"),
    Case("dkl-extract-positions-shape", lambda tmp: candidates.extract_patches(numpy.zeros((32, 32)), 8, positions=numpy.array([1.0, 2.0])), ValueError,
         r"positions must have shape \(K, 2\) as \(row, column\), got \(2,\)"),
    Case("dkl-embedding-ring-width-tiny", lambda tmp: embedding.PatchEmbedding(ring_width=1e-9).fit(_patches()), ValueError,
         r"ring_width must be a finite number of pixels >= 0\.5, got 1e-09"),
    Case("dkl-embedding-smoothing-nan", lambda tmp: embedding.PatchEmbedding(smoothing=NAN), ValueError, r"smoothing must be a finite number of pixels >= 0, got nan"),
    Case("dkl-embedding-n-components-zero", lambda tmp: embedding.PatchEmbedding(n_components=0), ValueError, r"n_components must be a whole number >= 1, got 0"),
    Case("dkl-embedding-latent-dim-zero", lambda tmp: embedding.PatchEmbedding(latent_dim=0), ValueError, r"latent_dim must be None or a whole number >= 1, got 0"),
    Case("dkl-embedding-max-fit-patches-zero", lambda tmp: embedding.PatchEmbedding(max_fit_patches=0), ValueError, r"max_fit_patches must be a whole number >= 1, got 0"),
    Case("dkl-embedding-transform-other-size", lambda tmp: _fitted_embedding().transform(_patches()[:, :6, :6]), ValueError,
         r"patches must be 8 x 8 pixels like the patches the embedding was fitted on, got 6 x 6"),
    Case("dkl-embedding-transform-before-fit", lambda tmp: embedding.PatchEmbedding().transform(_patches()), RuntimeError,
         r"PatchEmbedding\.transform called before fit; call fit\(patches\) first"),
    Case("dkl-pca-n-components-zero", lambda tmp: embedding.pca_features(_patches(), 0), ValueError, r"n_components must be a whole number >= 1, got 0"),
]

DKL_SCALARIZERS = [
    Case("dkl-band-reversed", lambda tmp: sc.BandMaximum((0.0, 1.0), (5.0, 2.0)), ValueError,
         r"band must be a finite \(low_eV, high_eV\) pair with low < high, got \(5\.0, 2\.0\)"),
    Case("dkl-band-nan", lambda tmp: sc.BandIntegral((0.0, 1.0), (NAN, 2.0)), ValueError,
         r"band must be a finite \(low_eV, high_eV\) pair with low < high, got \(nan, 2\.0\)"),
    Case("dkl-peak-ratio-reversed", lambda tmp: sc.PeakRatio((0.0, 1.0), (0.0, 1.0), (3.0, 2.0)), ValueError,
         r"denominator_band must be a finite \(low_eV, high_eV\) pair with low < high, got \(3\.0, 2\.0\)"),
    Case("dkl-edge-pre-edge-reversed", lambda tmp: sc.EdgeIntensity((200.0, 0.5), (280.0, 230.0), (290.0, 330.0)), ValueError,
         r"pre_edge must be a finite \(low_eV, high_eV\) pair with low < high, got \(280\.0, 230\.0\)"),
    Case("dkl-axis-zero-scale", lambda tmp: sc.BandMaximum((0.0, 0.0), (0.0, 1.0)), ValueError, r"axis scale must be a positive finite number of eV per channel, got 0\.0"),
    Case("dkl-axis-nan-offset", lambda tmp: sc.PeakEnergy((NAN, 0.1), (0.0, 1.0)), ValueError, r"axis offset must be a finite energy in eV, got nan"),
    Case("dkl-axis-not-increasing", lambda tmp: sc.energy_axis(3, numpy.array([0.0, 2.0, 1.0])), ValueError,
         r"axis must be finite, strictly increasing energies in eV, got \[0\.0, 2\.0, 1\.0\]"),
    Case("dkl-energy-axis-negative-channels", lambda tmp: sc.energy_axis(-1, (0.0, 1.0)), ValueError, r"n_channels must be a whole number >= 1, got -1"),
    Case("dkl-spectrum-nan", lambda tmp: sc.BandMaximum((0.0, 0.25), (4.0, 6.0))(numpy.where(numpy.arange(40) == 3, NAN, SPECTRUM)), ValueError,
         r"signal must be a finite 1D spectrum, got 1 NaN or infinite channel"),
    Case("dkl-spectrum-2d", lambda tmp: sc.BandMaximum((0.0, 1.0), (0.0, 1.0))(numpy.zeros((2, 2))), ValueError,
         r"signal must be a 1D spectrum \(channels,\), got shape \(2, 2\)"),
    Case("dkl-center-of-mass-nan", lambda tmp: sc.center_of_mass(numpy.where(numpy.eye(4) > 0, NAN, 1.0)), ValueError,
         r"frame must be a finite 2D diffraction frame, got 4 NaN or infinite pixels"),
    Case("dkl-center-of-mass-1d", lambda tmp: sc.center_of_mass(numpy.zeros(4)), ValueError, r"frame must be a 2D diffraction frame \(rows, columns\), got shape \(4,\)"),
    Case("dkl-center-of-mass-bad-centre", lambda tmp: sc.CenterOfMassMagnitude(centre=(NAN, 0.0)), ValueError,
         r"centre must be None or a finite \(row, column\) pair, got \(nan, 0\.0\)"),
    Case("dkl-custom-not-callable", lambda tmp: sc.Custom(bad(3)), TypeError, r"function must be a callable signal -> number, got int"),
    Case("dkl-custom-returns-string", lambda tmp: sc.Custom(lambda s: "abc")(numpy.ones(3)), TypeError, r"the custom scalarizer must return a finite number, got 'abc'"),
    Case("dkl-custom-returns-nan", lambda tmp: sc.Custom(lambda s: NAN)(numpy.ones(3)), ValueError,
         r"the custom scalarizer must return a finite number, got the non-finite value nan"),
]

DKL_MODEL = [
    Case("dkl-log-ei-best-nan", lambda tmp: acq.log_expected_improvement(numpy.zeros(3), numpy.ones(3), NAN), ValueError, r"best must be a finite incumbent value, got nan"),
    Case("dkl-log-ei-shape-mismatch", lambda tmp: acq.log_expected_improvement(numpy.zeros(3), numpy.ones(2), 0.0), ValueError,
         r"std must have the shape of mean \(3,\), got \(2,\)"),
    Case("dkl-log-ei-mean-nan", lambda tmp: acq.log_expected_improvement(numpy.array([0.0, NAN]), numpy.ones(2), 0.0), ValueError,
         r"mean must be finite, got 1 NaN or infinite value"),
    Case("dkl-ucb-negative-beta", lambda tmp: acq.upper_confidence_bound(numpy.zeros(2), numpy.ones(2), -1.0), ValueError,
         r"beta must be a finite exploration weight >= 0, got -1\.0"),
    Case("dkl-ucb-nan-beta", lambda tmp: acq.UpperConfidenceBound(NAN), ValueError, r"beta must be a finite exploration weight >= 0, got nan"),
    Case("dkl-gp-ucb-beta-step-zero", lambda tmp: acq.gp_ucb_beta(0, 10), ValueError, r"step must be a whole number >= 1, got 0"),
    Case("dkl-gp-ucb-beta-no-candidates", lambda tmp: acq.gp_ucb_beta(1, 0), ValueError, r"n_candidates must be a whole number >= 1, got 0"),
    Case("dkl-gp-ucb-beta-delta", lambda tmp: acq.gp_ucb_beta(1, 10, delta=1.5), ValueError, r"delta must be a confidence parameter in \(0, 1\), got 1\.5"),
    Case("dkl-noisy-incumbent-negative-index", lambda tmp: acq.noisy_incumbent(_posterior(), numpy.array([-1])), ValueError,
         r"measured must be whole-number candidate indices in \[0, 3\], got \[-1\]"),
    Case("dkl-noisy-incumbent-index-too-large", lambda tmp: acq.noisy_incumbent(_posterior(), numpy.array([4])), ValueError,
         r"measured must be whole-number candidate indices in \[0, 3\], got \[4\]"),
    Case("dkl-thompson-subset-zero", lambda tmp: acq.ThompsonSampling(numpy.random.default_rng(0), subset_size=0), ValueError,
         r"subset_size must be a whole number >= 1, got 0"),
    Case("dkl-thompson-no-generator", lambda tmp: acq.ThompsonSampling(bad(0)), TypeError, r"rng must be a numpy\.random\.Generator, got int"),
    Case("dkl-thompson-allowed-length", lambda tmp: acq.ThompsonSampling(numpy.random.default_rng(0), allowed=numpy.ones(3, bool))(_posterior()), ValueError,
         r"allowed must be a boolean mask with one entry per candidate \(4\), got shape \(3,\)"),
    Case("dkl-posterior-shape-mismatch", lambda tmp: Posterior.independent(numpy.zeros(3), numpy.ones(2)), ValueError,
         r"variance must have the shape of mean \(3,\), got \(2,\)"),
    Case("dkl-posterior-negative-variance", lambda tmp: Posterior.independent(numpy.zeros(2), numpy.array([1.0, -1.0])), ValueError,
         r"variance must be finite and >= 0, got -1\.0 at candidate 1"),
    Case("dkl-posterior-negative-noise", lambda tmp: Posterior.independent(numpy.zeros(2), numpy.ones(2), -1.0), ValueError,
         r"noise_variance must be a finite variance >= 0, got -1\.0"),
    Case("dkl-select-batch-q-zero", lambda tmp: batch.select_batch(_posterior(), acq.MaxUncertainty(), 0, numpy.ones(4, bool)), ValueError,
         r"q must be a whole number >= 1, got 0"),
    Case("dkl-select-batch-q-fractional", lambda tmp: batch.select_batch(_posterior(), acq.MaxUncertainty(), bad(1.5), numpy.ones(4, bool)), ValueError,
         r"q must be a whole number >= 1, got 1\.5"),
    Case("dkl-select-batch-allowed-length", lambda tmp: batch.select_batch(_posterior(), acq.MaxUncertainty(), 1, numpy.ones(3, bool)), ValueError,
         r"allowed must be a boolean mask with one entry per candidate \(4\), got shape \(3,\)"),
    Case("dkl-select-batch-allowed-float", lambda tmp: batch.select_batch(_posterior(), acq.MaxUncertainty(), 1, numpy.ones(4)), TypeError,
         r"allowed must be a boolean mask with one entry per candidate \(4\), got an array of dtype float64"),
    Case("dkl-select-batch-pending-too-large", lambda tmp: batch.select_batch(_posterior(), acq.MaxUncertainty(), 1, numpy.ones(4, bool), pending=[9]), ValueError,
         r"pending must be whole-number candidate indices in \[0, 3\], got \[9\]"),
    Case("dkl-select-batch-no-positions", lambda tmp: batch.select_batch(_posterior(), acq.MaxUncertainty(), 1, numpy.ones(4, bool), exclusion_radius=1.0), ValueError,
         r"positions must be given as \(N, 2\) pixels when exclusion_radius > 0, got None"),
    Case("dkl-select-batch-dose-remaining-nan", lambda tmp: batch.select_batch(_posterior(), acq.MaxUncertainty(), 1, numpy.ones(4, bool), dose_remaining=NAN),
         ValueError, r"dose_remaining must be a dose \(inf for no limit\), got nan"),
    Case("dkl-condition-on-index-too-large", lambda tmp: batch.condition_on(_posterior(), [7]), ValueError,
         r"indices must be whole-number candidate indices in \[0, 3\], got \[7\]"),
    Case("dkl-condition-on-fractional-index", lambda tmp: batch.condition_on(_posterior(), bad([1.5])), ValueError,
         r"indices must be whole-number candidate indices in \[0, 3\], got \[1\.5\]"),
    Case("dkl-exclusion-mask-radius-nan", lambda tmp: constraints.exclusion_mask(numpy.zeros((3, 2)), numpy.zeros((1, 2)), NAN), ValueError,
         r"radius must be a finite number of pixels >= 0, got nan"),
    Case("dkl-exclusion-mask-odd-centres", lambda tmp: constraints.exclusion_mask(numpy.zeros((3, 2)), numpy.array([1.0, 2.0, 3.0]), 1.0), ValueError,
         r"centres must be \(row, column\) pixel pairs of shape \(M, 2\), got shape \(3,\)"),
    Case("dkl-affordable-mask-nan-budget", lambda tmp: constraints.affordable_mask(numpy.ones(3), NAN), ValueError, r"dose_remaining must be a dose \(inf for no limit\), got nan"),
    Case("dkl-unvisited-mask-index-too-large", lambda tmp: constraints.unvisited_mask(4, [5]), ValueError,
         r"visited must be whole-number candidate indices in \[0, 3\], got \[5\]"),
    Case("dkl-unvisited-mask-negative-count", lambda tmp: constraints.unvisited_mask(-1, []), ValueError, r"n_candidates must be a whole number >= 0, got -1"),
    Case("dkl-stopping-patience-zero", lambda tmp: stopping.StoppingRule(patience=0), ValueError, r"patience must be a whole number >= 1, got 0"),
    Case("dkl-stopping-threshold-nan", lambda tmp: stopping.StoppingRule(threshold=NAN), ValueError, r"threshold must be None or a finite score, got nan"),
    Case("dkl-coverage-level", lambda tmp: dkl_calibration.interval_coverage(numpy.zeros(2), numpy.zeros(2), numpy.ones(2), 1.5), ValueError,
         r"level must be a probability that lies strictly between 0 and 1, got 1\.5"),
    Case("dkl-coverage-shape-mismatch", lambda tmp: dkl_calibration.interval_coverage(numpy.zeros(2), numpy.zeros(3), numpy.ones(2)), ValueError,
         r"mean must have the shape of values \(2,\), got \(3,\)"),
    Case("dkl-prospective-window-negative", lambda tmp: dkl_calibration.ProspectiveCoverage(window=-1), ValueError, r"window must be a whole number >= 1, got -1"),
    Case("dkl-gp-latent-nan", lambda tmp: surrogate.CandidateGP(numpy.array([[0.0], [NAN]])), ValueError,
         r"latent must be a finite real array of shape \(N, d\), got 1 NaN or infinite value"),
    Case("dkl-gp-head-dim-zero", lambda tmp: surrogate.CandidateGP(numpy.zeros((3, 2)), head_dim=0), ValueError, r"head_dim must be None or a whole number >= 1, got 0"),
    Case("dkl-gp-add-fractional-index", lambda tmp: _gp().add(bad([1.7]), [1.0]), ValueError, r"indices must be whole-number candidate indices in \[0, 9\], got \[1\.7\]"),
    Case("dkl-gp-refit-negative-iterations", lambda tmp: _gp_with_data().refit(iterations=-5), ValueError, r"iterations must be None or a whole number >= 0, got -5"),
    Case("dkl-gp-refit-negative-learning-rate", lambda tmp: _gp_with_data().refit(learning_rate=-0.1), ValueError,
         r"learning_rate must be a positive finite step size, got -0\.1"),
    Case("dkl-synthetic-fractional-shape", lambda tmp: dkl_synthetic.make_textured_sample(0, bad((64.5, 64))), ValueError,
         r"shape must be two whole pixel counts >= 16, got \(64\.5, 64\)"),
    Case("dkl-synthetic-no-grains", lambda tmp: dkl_synthetic.make_textured_sample(0, (64, 64), n_grains=0), ValueError, r"n_grains must be a whole number >= 1, got 0"),
    Case("dkl-synthetic-negative-noise", lambda tmp: dkl_synthetic.make_textured_sample(0, (64, 64), noise=-1.0), ValueError, r"noise must be a finite number >= 0, got -1\.0"),
    Case("dkl-synthetic-vacancy-fraction", lambda tmp: dkl_synthetic.make_textured_sample(0, (64, 64), vacancy_fraction=1.5), ValueError,
         r"vacancy_fraction must be a probability in \[0, 1\], got 1\.5"),
    Case("dkl-synthetic-property-at-shape", lambda tmp: _sample().property_at(numpy.zeros(3)), ValueError,
         r"positions must be \(row, column\) pixel positions of shape \(N, 2\), got shape \(3,\)"),
]

ELIT_FIND = [
    Case("elit-find-atoms-nan", lambda tmp: api.find_atoms(numpy.where(numpy.eye(64) > 0, NAN, _image())), ValueError,
         r"image must be finite, got 64 NaN or infinite pixels"),
    Case("elit-find-atoms-rgb", lambda tmp: api.find_atoms(numpy.zeros((64, 64, 3))), ValueError,
         r"image must be 2D \(rows, cols\), got 3D with shape \(64, 64, 3\) \(for an RGB or multi-channel image pass one channel"),
    Case("elit-find-atoms-too-small", lambda tmp: api.find_atoms(_image()[:16]), ValueError, r"image must be at least 32x32 pixels to see atom columns with their neighbours, got 16x64"),
    Case("elit-find-atoms-constant", lambda tmp: api.find_atoms(numpy.ones((64, 64))), ValueError, r"image must have contrast to find atoms in, got a constant image"),
    Case("elit-find-atoms-complex", lambda tmp: api.find_atoms(_image() + 1j), ValueError, r"image must be a 2D numeric array of real intensities, got dtype complex128"),
    Case("elit-find-atoms-threshold", lambda tmp: api.find_atoms(_image(), threshold=1.5), ValueError, r"threshold must be strictly between 0 and 1, got 1\.5"),
    Case("elit-find-atoms-threshold-string", lambda tmp: api.find_atoms(_image(), threshold=bad("0.5")), TypeError, r"threshold must be strictly between 0 and 1, got '0\.5'"),
    Case("elit-find-atoms-tta-string", lambda tmp: api.find_atoms(_image(), test_time_augmentation=bad("yes")), TypeError,
         r"test_time_augmentation must be True or False, got 'yes'"),
    Case("elit-find-atoms-unknown-model", lambda tmp: api.find_atoms(_image(), "mos3"), FileNotFoundError,
         r"no ensemble called 'mos3': not a packaged model \['graphene_v1', 'mos2_v1'\] and no file mos3\.json"),
    Case("elit-resolve-ensemble-int", lambda tmp: api.resolve_ensemble(bad(42)), ValueError,
         r"ensemble must be an Ensemble, a packaged model name such as 'mos2', a path or None, got int"),
    Case("elit-ensemble-class-name-count", lambda tmp: ensemble.Ensemble(model.EnsembleUNet(2, 3, 4), ("background", "A")), ValueError,
         r"class_names must give one name per network class \(3\), got 2"),
    Case("elit-ensemble-not-network", lambda tmp: ensemble.Ensemble(bad("net"), ("background", "A")), TypeError, r"network must be an EnsembleUNet, got str"),
    Case("elit-unet-zero-members", lambda tmp: model.EnsembleUNet(0, 3), ValueError, r"members must be a whole number >= 1, got 0"),
    Case("elit-unet-one-class", lambda tmp: model.EnsembleUNet(2, 1), ValueError, r"classes must be a whole number >= 2, got 1"),
    Case("elit-unet-member-out-of-range", lambda tmp: _tiny_ensemble().network.member(2), ValueError, r"index must be a whole number between 0 and 1, got 2"),
    Case("elit-member-probabilities-tta-string", lambda tmp: _tiny_ensemble().member_probabilities(_image(), test_time_augmentation=bad("no")), TypeError,
         r"test_time_augmentation must be True or False, got 'no'"),
]

ELIT_FILES = [
    Case("elit-load-truncated-json", _load(_truncated_json), storage.ModelIntegrityError, r"model metadata \S*tiny\.json must be valid JSON"),
    Case("elit-load-empty-json", _load(lambda tmp: _with_json_text(tmp, "")), storage.ModelIntegrityError, r"model metadata \S*tiny\.json must be valid JSON"),
    Case("elit-load-not-utf8", _load(lambda tmp: _with_json_text(tmp, b"\xff\xfe\x00{")), storage.ModelIntegrityError, r"model metadata \S*tiny\.json must be valid UTF-8 JSON"),
    Case("elit-load-json-list", _load(lambda tmp: _with_json_text(tmp, "[]")), storage.ModelIntegrityError, r"model metadata \S*tiny\.json must be a JSON object, got list"),
    Case("elit-load-missing-sha256", _load(lambda tmp: _edited(tmp, _drop("weights_sha256"))), storage.ModelIntegrityError,
         r"model metadata \S*tiny\.json must have the keys .*, missing \['weights_sha256'\]"),
    Case("elit-load-missing-network", _load(lambda tmp: _edited(tmp, _drop("network"))), storage.ModelIntegrityError,
         r"model metadata \S*tiny\.json must have the keys .*, missing \['network'\]"),
    Case("elit-load-missing-class-names", _load(lambda tmp: _edited(tmp, _drop("class_names"))), storage.ModelIntegrityError,
         r"model metadata \S*tiny\.json must have the keys .*, missing \['class_names'\]"),
    Case("elit-load-wrong-sha256", _load(_corrupted_weights), storage.ModelIntegrityError,
         r"checksum mismatch for \S*tiny\.pt: metadata says sha256 [0-9a-f]{64}, the file has [0-9a-f]{64}; the file is damaged or was replaced"),
    Case("elit-load-missing-weights", _load(_missing_weights), FileNotFoundError, r"weights file \S*tiny\.pt named in \S*tiny\.json is missing"),
    Case("elit-load-truncated-weights", _load(_truncated_weights), storage.ModelIntegrityError,
         r"weights file \S*tiny\.pt must be a torch state dict written by save_ensemble, but it could not be read"),
    Case("elit-load-wrong-tensor-shapes", _load(lambda tmp: _edited(tmp, _set_network("base_channels", 8))), storage.ModelIntegrityError,
         r"weights in \S*tiny\.pt do not fit the network described in \S*tiny\.json: tensor '[\w.]+' must have shape \([\d, ]+\), got \([\d, ]+\)"),
    Case("elit-load-renamed-tensor", _load(_renamed_tensor), storage.ModelIntegrityError,
         r"weights in \S*tiny\.pt do not fit the network described in \S*tiny\.json: missing tensors \['head_bias'\], unexpected tensors \['head_bias_old'\]"),
    Case("elit-load-weights-not-a-dict", _load(lambda tmp: _replaced_weights(tmp, torch.zeros(3))), storage.ModelIntegrityError,
         r"weights file \S*tiny\.pt must hold a state dict of tensors, got Tensor"),
    Case("elit-load-class-names-mismatch", _load(lambda tmp: _edited(tmp, _set("class_names", ["background", "A"]))), storage.ModelIntegrityError,
         r"class_names in \S*tiny\.json must give one name per network class \(3\), got 2"),
    Case("elit-load-format-version-text", _load(lambda tmp: _edited(tmp, _set("format_version", "abc"))), storage.ModelIntegrityError,
         r"format_version in \S*tiny\.json must be a whole number, got 'abc'"),
    Case("elit-load-format-version-newer", _load(lambda tmp: _edited(tmp, _set("format_version", 99))), ValueError,
         r"format_version in \S*tiny\.json must be at most 1 for this nion_autoem_elit, got 99"),
    Case("elit-load-network-zero-members", _load(lambda tmp: _edited(tmp, _set_network("members", 0))), storage.ModelIntegrityError,
         r"network in \S*tiny\.json must be a valid EnsembleUNet configuration: members must be a whole number >= 1, got 0"),
    Case("elit-load-network-missing-key", _load(lambda tmp: _edited(tmp, _drop_network("base_channels"))), storage.ModelIntegrityError,
         r"network in \S*tiny\.json must be a valid EnsembleUNet configuration: .*missing \['base_channels'\]"),
    Case("elit-load-weights-outside", _load(lambda tmp: _edited(tmp, _set("weights_file", "../x.pt"))), storage.ModelIntegrityError,
         r"weights_file in \S*tiny\.json must be a file name next to it, got '\.\./x\.pt'"),
    Case("elit-load-bad-calibration", _load(lambda tmp: _edited(tmp, _set("uncertainty_calibration", {"intercept": 0.0, "weights": [1.0, 2.0]}))),
         storage.ModelIntegrityError, r"uncertainty_calibration in \S*tiny\.json must be an uncertainty calibration: .*'weights': \[three numbers\]\}, got"),
    Case("elit-load-bad-imaging-ranges", _load(lambda tmp: _edited(tmp, _set("imaging_ranges", {"pixel_size_A": 0.1}))), storage.ModelIntegrityError,
         r"imaging_ranges in \S*tiny\.json must be valid imaging ranges: pixel_size_A must be a \(low, high\) pair, got 0\.1"),
    Case("elit-load-path-int", lambda tmp: storage.load_ensemble(bad(123)), TypeError, r"name_or_path must be a packaged model name or a path, got int"),
    Case("elit-save-not-ensemble", lambda tmp: storage.save_ensemble(bad("ens"), tmp / "x"), TypeError, r"ens must be an Ensemble, got str"),
]

ELIT_TRAINING = [
    Case("elit-iteration-steps-negative", lambda tmp: iterative.IterationConfig(steps=-5), ValueError, r"steps must be a whole number >= 1, got -5"),
    Case("elit-iteration-steps-fractional", lambda tmp: iterative.IterationConfig(steps=bad(2.5)), ValueError, r"steps must be a whole number >= 1, got 2\.5"),
    Case("elit-iteration-batch-zero", lambda tmp: iterative.IterationConfig(batch_per_member=0), ValueError, r"batch_per_member must be a whole number >= 1, got 0"),
    Case("elit-iteration-crop-50", lambda tmp: iterative.IterationConfig(crop=50), ValueError, r"crop must be a multiple of 16 of at least 32 pixels, got 50"),
    Case("elit-iteration-learning-rate-negative", lambda tmp: iterative.IterationConfig(learning_rate=-1e-3), ValueError,
         r"learning_rate must be a positive finite number, got -0\.001"),
    Case("elit-iteration-learning-rate-nan", lambda tmp: iterative.IterationConfig(learning_rate=NAN), ValueError, r"learning_rate must be a positive finite number, got nan"),
    Case("elit-iteration-synthetic-share", lambda tmp: iterative.IterationConfig(synthetic_share=1.5), ValueError, r"synthetic_share must be a fraction in \[0, 1\], got 1\.5"),
    Case("elit-iteration-synthetic-frames-zero", lambda tmp: iterative.IterationConfig(synthetic_frames=0), ValueError, r"synthetic_frames must be a whole number >= 1, got 0"),
    Case("elit-iteration-keep-fraction-negative", lambda tmp: iterative.IterationConfig(keep_fraction=-0.1), ValueError,
         r"keep_fraction must be a fraction in \[0, 1\], got -0\.1"),
    Case("elit-iteration-max-uncertainty-nan", lambda tmp: iterative.IterationConfig(max_uncertainty=NAN), ValueError,
         r"max_uncertainty must be a fraction in \[0, 1\], got nan"),
    Case("elit-iteration-min-per-class-negative", lambda tmp: iterative.IterationConfig(min_per_class=-1), ValueError, r"min_per_class must be a whole number >= 0, got -1"),
    Case("elit-iteration-background-confidence", lambda tmp: iterative.IterationConfig(background_confidence=1.5), ValueError,
         r"background_confidence must be a probability in \(0, 1\], got 1\.5"),
    Case("elit-iteration-seed-negative", lambda tmp: iterative.IterationConfig(seed=-1), ValueError, r"seed must be a whole number >= 0, got -1"),
    Case("elit-iteration-frame-in-counts-string", lambda tmp: iterative.IterationConfig(frame_in_counts=bad("no")), TypeError, r"frame_in_counts must be True or False, got 'no'"),
    Case("elit-iteration-unknown-lattice", lambda tmp: iterative.elit_iteration(_tiny_ensemble(), _image(128), bad("mos3")), ValueError,
         r"lattice must be a LatticeSpec or one of 'graphene', 'mos2', 'square', got 'mos3'"),
    Case("elit-iteration-lattice-int", lambda tmp: iterative.elit_iteration(_tiny_ensemble(), _image(128), bad(5)), TypeError,
         r"lattice must be a LatticeSpec or one of 'graphene', 'mos2', 'square', got int"),
    Case("elit-iteration-config-dict", lambda tmp: iterative.elit_iteration(_tiny_ensemble(), _image(128), lattices.mos2_lattice(), bad({"steps": 5})), TypeError,
         r"config must be an IterationConfig, got dict"),
    Case("elit-iteration-frame-smaller-than-crop", lambda tmp: iterative.elit_iteration(_tiny_ensemble(), _image(64), lattices.mos2_lattice()), ValueError,
         r"image must be at least 96 pixels \(config\.crop\) on each side for an ELIT iteration, got \(64, 64\)"),
    Case("elit-iteration-ens-string", lambda tmp: iterative.elit_iteration(bad("mos2"), _image(128), lattices.mos2_lattice()), TypeError, r"ens must be an Ensemble, got str"),
    Case("elit-training-config-members-zero", lambda tmp: training.TrainingConfig(members=0), ValueError, r"members must be a whole number >= 1, got 0"),
    Case("elit-training-config-swa-fraction", lambda tmp: training.TrainingConfig(swa_fraction=1.5), ValueError, r"swa_fraction must be a fraction in \[0, 1\], got 1\.5"),
    Case("elit-training-fit-negative-steps", lambda tmp: _fit(steps=-5), ValueError, r"steps must be a whole number >= 1, got -5"),
    Case("elit-training-fit-share-count", lambda tmp: _fit(shares=(0.5, 0.5)), ValueError, r"pool_shares must give one share per pool \(1\), got 2"),
]

ELIT_SYNTHETIC = [
    Case("elit-generate-frame-fractional-shape", lambda tmp: synthetic.generate_frame(lattices.mos2_lattice(), bad((64.5, 64))), ValueError,
         r"shape must be two whole pixel counts >= 16, got \(64\.5, 64\)"),
    Case("elit-generate-frame-small-shape", lambda tmp: synthetic.generate_frame(lattices.mos2_lattice(), (8, 8)), ValueError,
         r"shape must be two whole pixel counts >= 16, got \(8, 8\)"),
    Case("elit-generate-frame-unknown-lattice", lambda tmp: synthetic.generate_frame(bad("mos3")), ValueError,
         r"lattice must be a LatticeSpec or one of 'graphene', 'mos2', 'square', got 'mos3'"),
    Case("elit-generate-frame-negative-seed", lambda tmp: synthetic.generate_frame(lattices.mos2_lattice(), (32, 32), seed=-1), ValueError,
         r"seed must be None, a numpy\.random\.Generator or a whole number >= 0, got -1"),
    Case("elit-generate-frame-label-radius", lambda tmp: synthetic.generate_frame(lattices.mos2_lattice(), (32, 32), label_radius_A=-1.0), ValueError,
         r"label_radius_A must be a positive finite radius in ångström, got -1\.0"),
    Case("elit-conditions-zero-pixel-size", lambda tmp: synthetic.ImagingConditions(pixel_size_A=0.0), ValueError,
         r"pixel_size_A must be a positive finite number of ångström per pixel, got 0\.0"),
    Case("elit-conditions-negative-dose", lambda tmp: synthetic.ImagingConditions(dose_e_per_A2=-1.0), ValueError,
         r"dose_e_per_A2 must be a positive finite dose in e/Å\^2, got -1\.0"),
    Case("elit-conditions-nan-probe", lambda tmp: synthetic.ImagingConditions(probe_fwhm_A=NAN), ValueError,
         r"probe_fwhm_A must be a positive finite width in ångström, got nan"),
    Case("elit-conditions-fractional-blobs", lambda tmp: synthetic.ImagingConditions(contamination_blobs=bad(1.5)), ValueError,
         r"contamination_blobs must be a whole number >= 0, got 1\.5"),
    Case("elit-conditions-scattering-fraction", lambda tmp: synthetic.ImagingConditions(scattering_fraction=1.5), ValueError,
         r"scattering_fraction must be a fraction in \(0, 1\], got 1\.5"),
    Case("elit-ranges-reversed", lambda tmp: synthetic.ImagingRanges(pixel_size_A=(0.16, 0.08)), ValueError,
         r"pixel_size_A must be a \(low, high\) range with 0 < low <= high, got \(0\.16, 0\.08\)"),
    Case("elit-ranges-zero-dose", lambda tmp: synthetic.ImagingRanges(dose_e_per_A2=(0.0, 1e5)), ValueError,
         r"dose_e_per_A2 must be a \(low, high\) range with 0 < low <= high, got \(0\.0, 100000\.0\)"),
    Case("elit-ranges-reversed-blobs", lambda tmp: synthetic.ImagingRanges(contamination_blobs=(3, 0)), ValueError,
         r"contamination_blobs must be a \(low, high\) range of whole numbers with 0 <= low <= high, got \(3, 0\)"),
    Case("elit-ranges-from-dict-scalar", lambda tmp: synthetic.ImagingRanges.from_dict({"pixel_size_A": 0.1}), ValueError,
         r"pixel_size_A must be a \(low, high\) pair, got 0\.1"),
    Case("elit-ranges-nan-drift", lambda tmp: synthetic.ImagingRanges(drift_shear=(NAN, 0.03)), ValueError,
         r"drift_shear must be a finite \(low, high\) range with low <= high, got \(nan, 0\.03\)"),
    Case("elit-dose-for-peak-counts-negative", lambda tmp: synthetic.dose_for_peak_counts(-1.0, lattices.ColumnSpecies("Mo", (42,)), 0.1, 0.8, 0.035), ValueError,
         r"peak_counts must be a positive finite number of counts, got -1\.0"),
    Case("elit-dose-for-peak-counts-zero-pixel", lambda tmp: synthetic.dose_for_peak_counts(35.0, lattices.ColumnSpecies("Mo", (42,)), 0.0, 0.8, 0.035), ValueError,
         r"pixel_size_A must be a positive finite number of ångström per pixel, got 0\.0"),
    Case("elit-lattice-concentration-reversed", lambda tmp: lattices.mos2_lattice(s1_concentration=(0.5, 0.2)), ValueError,
         r"s1_concentration must be a \(low, high\) range of fractions with 0 <= low <= high <= 1, got \(0\.5, 0\.2\)"),
    Case("elit-lattice-concentration-above-one", lambda tmp: lattices.graphene_lattice(si_concentration=(0.0, 1.5)), ValueError,
         r"si_concentration must be a \(low, high\) range of fractions with 0 <= low <= high <= 1, got \(0\.0, 1\.5\)"),
    Case("elit-square-lattice-zero-constant", lambda tmp: lattices.square_lattice(0.0), ValueError,
         r"lattice_constant_A must be a positive finite length in ångström, got 0\.0"),
    Case("elit-square-lattice-fractional-z", lambda tmp: lattices.square_lattice(atomic_number=bad(30.5)), ValueError,
         r"atomic_number must be a whole number between 1 and 118, got 30\.5"),
    Case("elit-lattice-unknown-species", lambda tmp: lattices.mos2_lattice().class_index("Xx"), ValueError,
         r"species_name must be one of \('Mo', 'S2', 'S1', 'W'\), got 'Xx'"),
    Case("elit-lattice-parallel-cell", lambda tmp: _lattice(cell_A=((1.0, 0.0), (2.0, 0.0))), ValueError,
         r"cell_A must be two finite, non-parallel \(x, y\) vectors in ångström, got \(\(1\.0, 0\.0\), \(2\.0, 0\.0\)\)"),
    Case("elit-lattice-unknown-host", lambda tmp: _lattice(hosts={"site": "Y"}), ValueError, r"hosts must name species from \('X',\), got 'Y' for site kind 'site'"),
    Case("elit-column-species-no-atoms", lambda tmp: lattices.ColumnSpecies("X", ()), ValueError,
         r"atomic_numbers must be one or more whole numbers between 1 and 118, got \(\)"),
]

ELIT_ATOMS = [
    Case("elit-extract-atoms-3d", lambda tmp: atoms.extract_atoms(numpy.zeros((4, 32, 32)), ("background", "A")), ValueError,
         r"member_probabilities must be \(members, classes, rows, cols\), got shape \(4, 32, 32\)"),
    Case("elit-extract-atoms-class-names", lambda tmp: atoms.extract_atoms(numpy.zeros((1, 3, 32, 32)), ("background", "A")), ValueError,
         r"class_names must give 3 class names, one per class of member_probabilities, got 2"),
    Case("elit-extract-atoms-threshold", lambda tmp: atoms.extract_atoms(numpy.zeros((1, 2, 32, 32)), ("background", "A"), threshold=0.0), ValueError,
         r"threshold must be strictly between 0 and 1, got 0\.0"),
    Case("elit-extract-atoms-nan", lambda tmp: atoms.extract_atoms(numpy.full((1, 2, 32, 32), NAN), ("background", "A")), ValueError,
         r"member_probabilities must be finite probabilities, got 2048 NaN or infinite values"),
    Case("elit-calibration-two-weights", lambda tmp: atoms.UncertaintyCalibration.from_dict({"intercept": 0.0, "weights": [1.0, 2.0]}), ValueError,
         r"uncertainty calibration must be \{'intercept': number, 'weights': \[three numbers\]\}, got"),
    Case("elit-match-columns-negative-distance", lambda tmp: evaluation.match_columns(numpy.zeros((1, 2)), numpy.zeros((1, 2)), -1.0), ValueError,
         r"max_distance_px must be a finite distance >= 0 in pixels, got -1\.0"),
    Case("elit-match-columns-nan", lambda tmp: evaluation.match_columns(numpy.array([[NAN, 0.0]]), numpy.zeros((1, 2)), 1.0), ValueError,
         r"found must be finite \(row, col\) positions of shape \(N, 2\), got 1 NaN or infinite value"),
    Case("elit-match-columns-three-columns", lambda tmp: evaluation.match_columns(numpy.zeros((3, 3)), numpy.zeros((1, 2)), 1.0), ValueError,
         r"found must be finite \(row, col\) positions of shape \(N, 2\), got shape \(3, 3\)"),
    Case("elit-score-frame-class-count", lambda tmp: _score(found_classes=1), ValueError, r"found_classes must have one class per found position \(2\), got 1"),
    Case("elit-score-frame-zero-spacing", lambda tmp: _score(nearest=0.0), ValueError, r"nearest_neighbour_px must be a positive finite distance in pixels, got 0\.0"),
    Case("elit-score-frame-border-without-shape", lambda tmp: _score(border=2.0), ValueError, r"frame_shape must be given as \(rows, cols\) when border_px > 0, got None"),
    Case("elit-summarise-empty", lambda tmp: evaluation.summarise([], ("background", "A")), ValueError, r"frames must hold the scores of at least one frame, got none"),
    Case("elit-summarise-missing-keys", lambda tmp: evaluation.summarise([{"tp": 1}], ("background",)), ValueError,
         r"frames\[0\] must be scores from score_frame with the keys .*, missing \['fn', 'fp', 'squared_error_sum'\]"),
    Case("elit-ece-zero-bins", lambda tmp: elit_calibration.expected_calibration_error(numpy.zeros(3), numpy.zeros(3, bool), bins=0), ValueError,
         r"bins must be a whole number >= 1, got 0"),
    Case("elit-ece-length-mismatch", lambda tmp: elit_calibration.expected_calibration_error(numpy.zeros(3), numpy.zeros(2, bool)), ValueError,
         r"errors must have one entry per probability \(3\), got 2"),
    Case("elit-fit-logistic-two-features", lambda tmp: elit_calibration.fit_logistic(numpy.zeros((5, 2)), numpy.zeros(5)), ValueError,
         r"features must be finite \(n, 3\) uncertainty features, got shape \(5, 2\)"),
]

TARGETING = [
    Case("targeting-cusum-rise", lambda tmp: PoissonCusum(250.0, 400.0, 5.0), ValueError,
         r"rate_after must be smaller than rate_before \(a drop in counts\), got rate_before=250\.0, rate_after=400\.0"),
    Case("targeting-cusum-nan-rate", lambda tmp: PoissonCusum(NAN, 250.0, 5.0), ValueError, r"rate_before must be a positive finite count per sample, got nan"),
    Case("targeting-cusum-string-threshold", lambda tmp: PoissonCusum(400.0, 250.0, bad("abc")), TypeError, r"threshold must be a positive finite number of nats, got 'abc'"),
    Case("targeting-cusum-string-rate", lambda tmp: PoissonCusum(bad("400"), 250.0, 5.0), TypeError, r"rate_before must be a positive finite count per sample, got '400'"),
    Case("targeting-cusum-zero-threshold", lambda tmp: PoissonCusum(400.0, 250.0, 0.0), ValueError, r"threshold must be a positive finite number of nats, got 0\.0"),
    Case("targeting-cusum-update-nan", lambda tmp: PoissonCusum(400.0, 250.0, 5.0).update([400.0, NAN]), ValueError,
         r"samples must be finite counts; the chunk contains NaN or infinity"),
    Case("targeting-cusum-update-strings", lambda tmp: PoissonCusum(400.0, 250.0, 5.0).update(bad(["a"])), TypeError, r"samples must be numeric counts, got \['a'\]"),
    Case("targeting-cusum-update-2d", lambda tmp: PoissonCusum(400.0, 250.0, 5.0).update(numpy.ones((2, 2))), ValueError,
         r"samples must be a scalar or a 1-D chunk of counts, got an array of shape \(2, 2\)"),
    Case("targeting-threshold-zero-samples", lambda tmp: threshold_for_false_alarm(400.0, 250.0, 0, 0.01), ValueError,
         r"samples must be a positive whole number of samples, got 0"),
    Case("targeting-threshold-probability", lambda tmp: threshold_for_false_alarm(400.0, 250.0, 100, 1.5), ValueError,
         r"probability must be a number that lies strictly between 0 and 1, got 1\.5"),
    Case("targeting-threshold-probability-string", lambda tmp: threshold_for_false_alarm(400.0, 250.0, 100, bad("0.01")), TypeError,
         r"probability must be a number that lies strictly between 0 and 1, got '0\.01'"),
    Case("targeting-threshold-unknown-method", lambda tmp: threshold_for_false_alarm(400.0, 250.0, 100, 0.01, method="guess"), ValueError,
         r"method must be 'markov', 'siegmund' or 'bound', got 'guess'"),
    Case("targeting-false-alarm-huge-cells", lambda tmp: false_alarm_probability(400.0, 250.0, 4.0, 100, cells=10**6), ValueError,
         r"cells must be a whole number between 2 and 2000, got 1000000"),
    Case("targeting-detect-drop-string", lambda tmp: detect_drop(bad("abc"), 400.0, 250.0, 5.0), TypeError, r"trace must be numeric counts, got 'abc'"),
    Case("targeting-estimate-rate-empty", lambda tmp: estimate_rate([]), ValueError, r"trace must be a non-empty 1-D array of counts, got shape \(0,\)"),
    Case("targeting-estimate-rate-fractional-blocks", lambda tmp: estimate_rate([1.0, 2.0, 3.0], blocks=bad(2.5)), ValueError,
         r"blocks must be a whole number between 1 and the trace length 3, got 2\.5"),
    Case("targeting-drift-zero-max", lambda tmp: DriftEstimator(max_measurements=0), ValueError, r"max_measurements must be a whole number >= 1, got 0"),
    Case("targeting-drift-half-life-string", lambda tmp: DriftEstimator(half_life_s=bad("10")), TypeError,
         r"half_life_s must be a positive finite number of seconds or None, got '10'"),
    Case("targeting-drift-add-string-time", lambda tmp: DriftEstimator().add(bad("abc"), (0.0, 0.0)), TypeError, r"time_s must be a finite time in seconds, got 'abc'"),
    Case("targeting-drift-add-offset-three", lambda tmp: DriftEstimator().add(0.0, (0.0, 0.0, 0.0)), ValueError,
         r"offset_nm must be a finite \(y, x\) pair in nm, got \(0\.0, 0\.0, 0\.0\)"),
    Case("targeting-drift-predict-nan", lambda tmp: DriftEstimator().predict(NAN), ValueError, r"time_s must be a finite time in seconds, got nan"),
    Case("targeting-measure-shift-huge-upsample", lambda tmp: measure_shift(_image(16), _image(16), 0.01, upsample=10**9), ValueError,
         r"upsample must be a whole number between 1 and 1000, got 1000000000"),
    Case("targeting-measure-shift-zero-pixel", lambda tmp: measure_shift(_image(16), _image(16), 0.0), ValueError,
         r"pixel_size_nm must be a positive finite number of nm, got 0\.0"),
    Case("targeting-measure-shift-nan", lambda tmp: measure_shift(_image(16), numpy.full((16, 16), NAN), 0.01), ValueError,
         r"image must be finite: it contains NaN or infinity; replace missing pixels before measuring drift"),
    Case("targeting-path-length-index-too-large", lambda tmp: path_length([[0.0, 0.0], [1.0, 1.0]], [5]), ValueError,
         r"order must be whole-number indices into positions_nm in \[0, 1\], got \[5\]"),
    Case("targeting-path-length-negative-index", lambda tmp: path_length([[0.0, 0.0], [1.0, 1.0]], [1, -1]), ValueError,
         r"order must be whole-number indices into positions_nm in \[0, 1\], got \[-1\]"),
    Case("targeting-path-length-fractional-index", lambda tmp: path_length([[0.0, 0.0], [1.0, 1.0]], [0.5]), ValueError,
         r"order must be whole-number indices into positions_nm in \[0, 1\], got \[0\.5\]"),
    Case("targeting-shortest-path-nan", lambda tmp: shortest_path([[0.0, NAN], [1.0, 1.0]]), ValueError, r"positions_nm must be finite; it contains NaN or infinity"),
    Case("targeting-shortest-path-negative-passes", lambda tmp: shortest_path([[0.0, 0.0], [1.0, 1.0]], max_passes=-1), ValueError,
         r"max_passes must be a non-negative whole number, got -1"),
    Case("targeting-select-kind-int", lambda tmp: select_targets(ATOMS, ["Mo", "S2", "S2", "S2"], kind=bad(5)), TypeError,
         r"kind must be a class name, a sequence of class names or None, got 5"),
    Case("targeting-select-classes-count", lambda tmp: select_targets(ATOMS, ["Mo", "S2", "S2"]), ValueError,
         r"classes must have one entry per atom: got 3 classes for 4 positions"),
    Case("targeting-in-region-zero-size", lambda tmp: in_region(ATOMS, (0.0, 0.0), 0.0), ValueError,
         r"size_nm must be a positive side or \(height, width\) in nm, got 0\.0"),
    Case("targeting-in-region-size-string", lambda tmp: in_region(ATOMS, (0.0, 0.0), bad("big")), TypeError,
         r"size_nm must be a positive side or \(height, width\) in nm, got 'big'"),
    Case("targeting-near-line-nan-width", lambda tmp: near_line(ATOMS, (0.0, 0.0), (1.0, 1.0), NAN), ValueError, r"width_nm must be a positive finite length in nm, got nan"),
    Case("targeting-nearest-to-negative-distance", lambda tmp: nearest_to(ATOMS, [[0.0, 0.0]], -1.0), ValueError,
         r"max_distance_nm must be a non-negative finite length in nm, got -1\.0"),
]

CASES: list[Case] = (GEOMETRY + XDATA + DKL_AGENT + DKL_CANDIDATES + DKL_SCALARIZERS + DKL_MODEL + ELIT_FIND + ELIT_FILES + ELIT_TRAINING + ELIT_SYNTHETIC
                     + ELIT_ATOMS + TARGETING)


@contextlib.contextmanager
def _deadline(seconds: float) -> typing.Iterator[None]:
    """Fail a call that takes longer than ``seconds`` instead of letting it hang the suite."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"no error within {seconds} s: the bad input hangs")

    if threading.current_thread() is not threading.main_thread():  # signals only reach the main thread
        yield
        return
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)


def test_the_table_is_large_and_unique() -> None:
    assert len(CASES) >= 110
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_gets_a_clear_error(case: Case, tmp_path: pathlib.Path) -> None:
    with _deadline(_DEADLINE_S), pytest.raises(BaseException) as raised:
        case.call(tmp_path)
    error = raised.value
    assert isinstance(error, case.error), f"expected {case.error.__name__}, got {type(error).__module__}.{type(error).__name__}: {error}"
    # A library's own exception (json.JSONDecodeError, numpy.linalg.LinAlgError, ...) is not a clear error, even when it is a ValueError.
    assert type(error).__module__ == "builtins" or type(error).__module__.startswith("nion_autoem"), f"{type(error).__module__}.{type(error).__name__}: {error}"
    raised_in = str(raised.traceback[-1].path)
    assert raised_in.startswith(_OUR_PACKAGES), f"raised deep inside {raised_in}: {error}"
    assert re.search(case.message, str(error)), f"message {str(error)!r} does not match {case.message!r}"


def _observes(indices: typing.Any, values: typing.Any) -> bool:
    agent = _agent()
    agent.observe(indices, values)
    return bool(agent.measured_indices.size == numpy.size(indices))


ACCEPTED: list[tuple[str, typing.Callable[[], object]]] = [
    ("integral float pixel counts", lambda: ScanFrame(bad((4.0, 6.0)), 1.0).shape == (4, 6)),
    ("numpy pixel counts", lambda: ScanFrame(bad((numpy.int64(4), numpy.int32(6))), bad(numpy.float32(1.0))).shape == (4, 6)),
    ("NaN positions still convert to NaN (the microscopes refuse them)", lambda: bool(numpy.isnan(FRAME.nm_to_fraction((NAN, 0.0))[0]))),
    ("numpy q and index arrays", lambda: _agent().suggest(q=bad(numpy.int64(2)), pending=numpy.array([0, 1])).size == 2),
    ("float index arrays holding whole numbers", lambda: _observes(numpy.array([1.0, 2.0]), [0.5, 0.4])),
    ("an unlimited dose budget and zero dose costs", lambda: DKLAgent(_patches(), _positions(), AgentConfig(dose_budget=INF), dose_cost=numpy.zeros(12)).should_stop is False),
    ("a single scalar index", lambda: _observes(bad(3), bad(0.5))),
    ("extreme but valid shares", lambda: iterative.IterationConfig(synthetic_share=1.0, keep_fraction=0.0, min_per_class=0).steps == 300),
    ("equal range ends", lambda: synthetic.ImagingRanges(pixel_size_A=(0.1, 0.1), contamination_blobs=(0, 0)).pixel_size_A == (0.1, 0.1)),
    ("negative drift ranges", lambda: synthetic.ImagingRanges(drift_shear=(-0.05, -0.01)).drift_shear == (-0.05, -0.01)),
    ("lattice given by name", lambda: synthetic.generate_frame(bad("square"), (32, 32), seed=0).image.shape == (32, 32)),
]


@pytest.mark.parametrize(("what", "call"), ACCEPTED, ids=[what for what, _ in ACCEPTED])
def test_valid_edge_inputs_are_still_accepted(what: str, call: typing.Callable[[], object]) -> None:
    with _deadline(_DEADLINE_S):
        result = call()
    assert result is True, f"{what}: got {result!r}"


def test_a_model_saved_by_save_ensemble_loads(tmp_path: pathlib.Path) -> None:
    loaded = storage.load_ensemble(_saved(tmp_path))
    assert loaded.class_names == ("background", "A", "B")
    assert storage.load_ensemble("mos2").members == 5
