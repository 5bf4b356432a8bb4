"""A small convolutional encoder of survey patches, made exactly invariant to the eight dihedral transforms.

The network reads a patch on the survey's own intensity scale (standardised
once for the whole survey, so a brighter, higher-Z column stays brighter
than its neighbours), runs three convolutions and pools every feature map
over rings around the probe position: the mean and the maximum of each
channel at 0-4, 4-8, 8-12, ... px from the centre. A column pair next to the
probe and the same pair 10 px away therefore give different features, and
the patch side only changes how many rings there are.

Rings map onto themselves under rotations by 90 degrees and mirrors, but
strided convolutions do not; :meth:`PatchEncoder.invariant_features`
therefore averages the pooled features over the eight transforms of every
patch, which makes them exactly invariant (the average runs over the whole
orbit of the patch).

Weights ship in ``nion_autoem_dkl/models`` with a JSON sidecar (version,
training recipe, SHA-256 of the weights), checked on every load; they are
produced by ``scripts/train_dkl_encoder.py``. Nothing is downloaded.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import threading
import typing

import numpy
import numpy.typing
import torch

from nion_autoem_checks.shipped import sha256_of
from nion_autoem_checks.shipped import sidecar
from nion_autoem_checks.shipped import verified_weights

_NDArray = numpy.typing.NDArray[typing.Any]

#: Folder of the shipped encoders.
PACKAGED_MODELS = pathlib.Path(__file__).with_name("models")
#: The encoder the deep embedding uses unless told otherwise.
DEFAULT_ENCODER = "columns_v1"
#: Format of the JSON sidecar.
FORMAT_VERSION = 1
#: Width in patch pixels of the rings the feature maps are pooled over.
RING_WIDTH_PX = 4.0
#: Smallest patch the encoder reads (one ring).
MIN_PATCH_PX = 8
#: Patches per forward pass.
BATCH = 512


class EncoderIntegrityError(ValueError):
    """An encoder's weights do not match its metadata (checksum, tensor names or shapes): the file is damaged or was replaced."""


def ring_weights(size: int, map_size: int, ring_width_px: float = RING_WIDTH_PX) -> torch.Tensor:
    """Rings around the patch centre on a feature map, as a (rings, map_size, map_size) 0/1 tensor.

    Parameters
    ----------
    size : int
        Patch side in pixels.
    map_size : int
        Side of the feature map (``size`` divided by the network's stride).
    ring_width_px : float
        Width of each ring in patch pixels.

    Returns
    -------
    rings : (R, map_size, map_size) float32 tensor
        One mask per ring with at least one map cell; ``R = ceil(size / 2 / ring_width_px)`` or fewer.

    Examples
    --------
    >>> ring_weights(32, 16).shape
    torch.Size([4, 16, 16])
    """
    step = size / map_size
    centres = (torch.arange(map_size, dtype=torch.float64) + 0.5) * step - size / 2.0
    radius = torch.hypot(centres[:, None], centres[None, :])
    n_rings = max(1, int(numpy.ceil(size / 2.0 / ring_width_px)))
    masks = [(radius >= k * ring_width_px) & (radius < (k + 1) * ring_width_px) for k in range(n_rings)]
    # The corners beyond the last ring belong to it, so no pixel is ignored.
    masks[-1] |= radius >= n_rings * ring_width_px
    return torch.stack([m for m in masks if bool(m.any())]).to(torch.float32)


class PatchEncoder(torch.nn.Module):
    """Patch in, ring-pooled feature maps out: three convolutions, then mean and max of every channel in every ring.

    Parameters
    ----------
    channels : tuple of int
        Channels of the three convolutions; the first has stride 2.

    Examples
    --------
    >>> encoder = PatchEncoder()
    >>> encoder(torch.zeros(3, 1, 32, 32)).shape
    torch.Size([3, 192])
    >>> encoder.invariant_features(numpy.zeros((2, 16, 16))).shape
    (2, 96)
    """

    def __init__(self, channels: tuple[int, int, int] = (16, 32, 24)) -> None:
        super().__init__()
        self.channels = tuple(int(c) for c in channels)
        c1, c2, c3 = self.channels
        self.layers = torch.nn.Sequential(
            torch.nn.Conv2d(1, c1, 5, stride=2, padding=2),
            torch.nn.ReLU(),
            torch.nn.Conv2d(c1, c2, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(c2, c3, 3, padding=1),
            torch.nn.ReLU(),
        )
        self._rings: dict[tuple[int, int], torch.Tensor] = {}
        self._lock = threading.Lock()

    def n_features(self, size: int) -> int:
        """Length of the feature vector of a ``size`` x ``size`` patch."""
        return 2 * self.channels[-1] * int(ring_weights(size, (size + 1) // 2).shape[0])

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        maps = self.layers(patches)
        key = (int(patches.shape[-1]), int(maps.shape[-1]))
        rings = self._rings.get(key)
        if rings is None:
            rings = self._rings[key] = ring_weights(*key)
        flat = maps.flatten(2)  # (n, c, cells)
        mask = rings.flatten(1).to(maps.dtype)  # (r, cells)
        means = flat @ (mask / mask.sum(dim=1, keepdim=True)).T  # (n, c, r)
        peaks = torch.stack([flat[:, :, ring > 0].amax(dim=-1) for ring in mask], dim=-1)  # (n, c, r)
        return torch.cat([means.flatten(1), peaks.flatten(1)], dim=1)

    def invariant_features(self, patches: _NDArray) -> _NDArray:
        """Features of patches (N, P, P), averaged over their eight dihedral transforms, as float64 (N, F).

        The patches should already be on the survey's standardised scale
        (see ``nion_autoem_dkl.deep.DeepEmbedding``).
        """
        stack = torch.as_tensor(numpy.ascontiguousarray(patches, dtype=numpy.float32))
        if stack.ndim != 3 or stack.shape[1] != stack.shape[2] or stack.shape[1] < MIN_PATCH_PX:
            raise ValueError(f"patches must have shape (N, P, P) with P >= {MIN_PATCH_PX}, got {tuple(stack.shape)}")
        outputs = []
        with self._lock, torch.inference_mode():
            was_training = self.training
            self.eval()
            try:
                for start in range(0, stack.shape[0], BATCH):
                    block = stack[start : start + BATCH, None]
                    total = None
                    for view in dihedral_views(block):
                        part = self(view)
                        total = part if total is None else total + part
                    assert total is not None
                    outputs.append(total / 8.0)
            finally:
                self.train(was_training)
        features: _NDArray = torch.cat(outputs).double().numpy()
        return features


def dihedral_views(block: torch.Tensor) -> list[torch.Tensor]:
    """The eight rotations and mirror images of a (n, 1, P, P) tensor, identity first."""
    rotations = [torch.rot90(block, k, dims=(2, 3)) for k in range(4)]
    return rotations + [torch.flip(r, dims=(3,)) for r in rotations]


def save_encoder(encoder: PatchEncoder, path: pathlib.Path, *, version: str, recipe: typing.Mapping[str, typing.Any], script: str) -> pathlib.Path:
    """Write ``path.pt`` (float32 tensors) and ``path.json`` (name, version, date, checksum, recipe, script); returns the JSON path.

    Examples
    --------
    >>> import tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> json_path = save_encoder(PatchEncoder(), folder / "tiny_v0", version="0", recipe={"steps": 0}, script="none")
    >>> load_encoder(json_path).channels
    (16, 32, 24)
    """
    weights = pathlib.Path(path).with_suffix(".pt")
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().to(torch.float32).contiguous() for k, v in encoder.state_dict().items()}, weights)
    metadata = {
        "format_version": FORMAT_VERSION,
        "name": weights.stem,
        "version": version,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "architecture": {
            "kind": "PatchEncoder",
            "channels": list(encoder.channels),
            "ring_width_px": RING_WIDTH_PX,
            "min_patch_px": MIN_PATCH_PX,
            "input": "patches standardised with the whole survey's median and spread",
        },
        "weights_file": weights.name,
        "weights_sha256": sha256_of(weights),
        "training": dict(recipe),
        "script": script,
    }
    json_path = weights.with_suffix(".json")
    json_path.write_text(json.dumps(metadata, indent=2) + "\n")
    return json_path


_CACHE: dict[str, PatchEncoder] = {}
_CACHE_LOCK = threading.Lock()


def encoder_metadata(name_or_path: str | pathlib.Path = DEFAULT_ENCODER) -> tuple[pathlib.Path, dict[str, typing.Any]]:
    """The JSON path and metadata of a shipped encoder (``"columns_v1"``) or a saved one (a ``.json`` or ``.pt`` path)."""
    return sidecar(name_or_path, PACKAGED_MODELS, kind="encoder", required=("weights_file", "weights_sha256", "architecture"),
                   error=EncoderIntegrityError, resave="re-save it with save_encoder")


def load_encoder(name_or_path: str | pathlib.Path = DEFAULT_ENCODER) -> PatchEncoder:
    """Load a shipped or saved encoder, verifying the SHA-256 of its weights against its metadata.

    Loaded encoders are cached by path and checksum; the checksum is read
    again on every call, so a replaced file is never served from the cache.
    Callers must not train the returned encoder in place (copy it first).

    Raises
    ------
    FileNotFoundError
        No such encoder, or its weights file is missing.
    EncoderIntegrityError
        The checksum differs from the metadata, or tensors are missing or of the wrong shape.

    Examples
    --------
    >>> load_encoder().channels
    (16, 32, 24)
    """
    json_path, metadata = encoder_metadata(name_or_path)
    weights, actual = verified_weights(json_path, metadata, error=EncoderIntegrityError,
                                       remedy="re-install the package or retrain with python scripts/train_dkl_encoder.py")
    key = f"{json_path.resolve()}|{actual}"
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    encoder = PatchEncoder(typing.cast(tuple[int, int, int], tuple(metadata["architecture"]["channels"])))
    state = torch.load(weights, map_location="cpu", weights_only=True)
    expected = encoder.state_dict()
    if set(state) != set(expected) or any(tuple(state[k].shape) != tuple(v.shape) for k, v in expected.items()):
        raise EncoderIntegrityError(f"weights in {weights} do not fit the architecture in {json_path} (tensor names or shapes differ)")
    encoder.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    encoder.eval()
    with _CACHE_LOCK:
        _CACHE[key] = encoder
    return encoder
