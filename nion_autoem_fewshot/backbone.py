"""The shipped feature extractor: a tiny CNN pretrained self-supervised on simulated tiles.

Four convolutions (16-32-64-64 channels, the first three with stride 2) and
global mean and max pooling give a 128-number description of a tile.  The
network is fully convolutional, so it reads tiles of any size from
:data:`MIN_TILE_PX` to :data:`MAX_INPUT_PX` at their own sampling (larger
tiles are averaged down to :data:`MAX_INPUT_PX`); every tile is standardised
on its own (zero mean, unit variance), so a change of contrast or brightness
between frames does not move its features.

The weights are two files side by side in :data:`PACKAGED_MODELS`:
``NAME.pt`` (tensors only, read with ``weights_only=True``) and ``NAME.json``
(format version, name, version, SHA-256 of the weights, training recipe,
created date, the script that trains them).  The checksum is verified on
every load.  :mod:`nion_autoem_fewshot.pretrain` retrains them.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import pathlib
import threading
import typing

import numpy
import numpy.typing
import torch
import torch.nn.functional

from nion_autoem_checks.shipped import sha256_of
from nion_autoem_checks.shipped import sidecar
from nion_autoem_checks.shipped import verified_weights

_NDArray = numpy.typing.NDArray[typing.Any]

FORMAT_VERSION = 1
PACKAGED_MODELS = pathlib.Path(__file__).parent / "models"
#: The backbone ``load_backbone()`` gives without a name.
DEFAULT_BACKBONE = "tiles_v1"
#: Smallest tile side the backbone reads: three stride-2 layers leave 2 x 2 cells to pool.
MIN_TILE_PX = 16
#: Tiles larger than this are averaged down to it (the features stay meaningful and the speed stays up).
MAX_INPUT_PX = 64
#: Tiles per forward pass: large enough to keep two cores busy, small enough to stay in cache.
BATCH = 512


class BackboneIntegrityError(ValueError):
    """A backbone's weights do not match its metadata (checksum, keys or shapes): the file is damaged or was replaced."""


class TileEncoder(torch.nn.Module):
    """Tile in, 128 features out: four convolutions, then global mean and max pooling.

    Parameters
    ----------
    channels : tuple of int
        Channels of the four convolutions.

    Examples
    --------
    >>> encoder = TileEncoder()
    >>> encoder(torch.zeros(3, 1, 32, 32)).shape
    torch.Size([3, 128])
    """

    def __init__(self, channels: tuple[int, int, int, int] = (16, 32, 64, 64)) -> None:
        super().__init__()
        self.channels = tuple(int(c) for c in channels)
        c1, c2, c3, c4 = self.channels
        self.layers = torch.nn.Sequential(
            torch.nn.Conv2d(1, c1, 5, stride=2, padding=2), torch.nn.BatchNorm2d(c1), torch.nn.ReLU(inplace=True),
            torch.nn.Conv2d(c1, c2, 3, stride=2, padding=1), torch.nn.BatchNorm2d(c2), torch.nn.ReLU(inplace=True),
            torch.nn.Conv2d(c2, c3, 3, stride=2, padding=1), torch.nn.BatchNorm2d(c3), torch.nn.ReLU(inplace=True),
            torch.nn.Conv2d(c3, c4, 3, stride=1, padding=1), torch.nn.BatchNorm2d(c4), torch.nn.ReLU(inplace=True),
        )

    @property
    def features(self) -> int:
        """Length of the feature vector (mean and max of the last layer)."""
        return 2 * self.channels[-1]

    def fused(self) -> TileEncoder:
        """A copy for inference with every batch norm folded into its convolution (the same features, about a third faster)."""
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        copy = TileEncoder(typing.cast(tuple[int, int, int, int], self.channels))
        copy.load_state_dict(self.state_dict())
        copy.eval()
        modules = list(copy.layers)
        fused: list[torch.nn.Module] = []
        for index, module in enumerate(modules):
            if isinstance(module, torch.nn.Conv2d) and isinstance(modules[index + 1], torch.nn.BatchNorm2d):
                fused.append(fuse_conv_bn_eval(module, typing.cast(torch.nn.BatchNorm2d, modules[index + 1])))
            elif not isinstance(module, torch.nn.BatchNorm2d):
                fused.append(module)
        copy.layers = torch.nn.Sequential(*fused)
        return copy

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        cells = self.layers(tiles)
        return torch.cat([cells.mean(dim=(2, 3)), cells.amax(dim=(2, 3))], dim=1)


def standardise(tiles: torch.Tensor) -> torch.Tensor:
    """Every tile to zero mean and unit variance (a flat tile stays flat, at zero), shape (n, 1, t, t)."""
    mean = tiles.mean(dim=(-2, -1), keepdim=True)
    std = tiles.std(dim=(-2, -1), keepdim=True)
    return (tiles - mean) / torch.clamp(std, min=1e-6)


def network_input(tiles: _NDArray | torch.Tensor) -> torch.Tensor:
    """Tiles (n, t, t) as the network reads them: float32, standardised, at most :data:`MAX_INPUT_PX` on a side."""
    tensor = torch.as_tensor(numpy.asarray(tiles, dtype=numpy.float32) if not isinstance(tiles, torch.Tensor) else tiles, dtype=torch.float32)
    tensor = tensor.reshape(-1, 1, tensor.shape[-2], tensor.shape[-1])
    if max(tensor.shape[-2:]) > MAX_INPUT_PX:
        tensor = torch.nn.functional.interpolate(tensor, size=(MAX_INPUT_PX, MAX_INPUT_PX), mode="area")
    return standardise(tensor)


@dataclasses.dataclass
class Backbone:
    """A loaded encoder with its metadata; :meth:`features` turns tiles into feature vectors.

    Parameters
    ----------
    encoder : TileEncoder
        The network, in eval mode.
    metadata : dict
        What its JSON says (name, version, recipe, checksum).
    """

    encoder: TileEncoder
    metadata: dict[str, typing.Any]
    threads: int | None = None

    def __post_init__(self) -> None:
        self.__lock = threading.Lock()

    @property
    def name(self) -> str:
        """Name and version, e.g. ``"tiles_v1"``; saved with every support set."""
        return str(self.metadata.get("name", "unnamed"))

    @property
    def version(self) -> str:
        return str(self.metadata.get("version", "0"))

    def features(self, tiles: _NDArray) -> _NDArray:
        """Features of tiles (n, t, t) as float32 (n, 128), in batches of :data:`BATCH`.

        Raises
        ------
        ValueError
            If the tiles are smaller than :data:`MIN_TILE_PX` on a side.

        Examples
        --------
        >>> backbone = load_backbone()
        >>> backbone.features(numpy.random.default_rng(0).normal(size=(5, 32, 32))).shape
        (5, 128)
        """
        tiles = numpy.asarray(tiles)
        if tiles.ndim != 3:
            raise ValueError(f"tiles must be a stack (n, rows, cols), got shape {tiles.shape}")
        check_tile_size(min(tiles.shape[1:]))
        out = numpy.empty((len(tiles), self.encoder.features), dtype=numpy.float32)
        # one forward pass at a time: torch's thread pool is shared, and the live view and a plan may ask together
        with self.__lock, torch.inference_mode():
            previous = torch.get_num_threads()
            if self.threads:
                torch.set_num_threads(self.threads)
            try:
                for start in range(0, len(tiles), BATCH):
                    out[start:start + BATCH] = self.encoder(network_input(tiles[start:start + BATCH])).numpy()
            finally:
                if self.threads:
                    torch.set_num_threads(previous)
        return out


def check_tile_size(tile_px: int) -> None:
    """Refuse tiles the backbone cannot read, saying what size would do.

    Examples
    --------
    >>> check_tile_size(8)
    Traceback (most recent call last):
    ...
    ValueError: tiles of 8 px are smaller than the backbone accepts (16 px on a side); choose tile_px >= 16, or a larger tile_nm
    """
    if tile_px < MIN_TILE_PX:
        raise ValueError(f"tiles of {tile_px} px are smaller than the backbone accepts ({MIN_TILE_PX} px on a side); "
                         f"choose tile_px >= {MIN_TILE_PX}, or a larger tile_nm")


def save_backbone(encoder: TileEncoder, path: pathlib.Path, *, version: str, recipe: typing.Mapping[str, typing.Any], script: str) -> pathlib.Path:
    """Write ``path.pt`` (half-precision tensors) and ``path.json`` (name, version, checksum, recipe, script); returns the JSON path.

    Examples
    --------
    >>> import tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> json_path = save_backbone(TileEncoder(), folder / "tiny_v0", version="0", recipe={"steps": 0}, script="none")
    >>> load_backbone(json_path).name
    'tiny_v0'
    """
    weights = pathlib.Path(path).with_suffix(".pt")
    weights.parent.mkdir(parents=True, exist_ok=True)
    # half precision halves the shipped file; features are computed in float32
    torch.save({k: v.detach().to(torch.float16) if v.is_floating_point() else v.detach() for k, v in encoder.state_dict().items()}, weights)
    metadata = {"format_version": FORMAT_VERSION, "name": weights.stem, "version": version,
                "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "architecture": {"kind": "TileEncoder", "channels": list(encoder.channels), "features": encoder.features,
                                 "min_tile_px": MIN_TILE_PX, "max_input_px": MAX_INPUT_PX, "input": "each tile standardised to zero mean, unit variance"},
                "weights_file": weights.name, "weights_sha256": sha256_of(weights), "training": dict(recipe), "script": script}
    json_path = weights.with_suffix(".json")
    json_path.write_text(json.dumps(metadata, indent=2) + "\n")
    return json_path


_CACHE: dict[str, Backbone] = {}
_CACHE_LOCK = threading.Lock()


def load_backbone(name_or_path: str | pathlib.Path = DEFAULT_BACKBONE, *, threads: int | None = None) -> Backbone:
    """Load a shipped backbone (``"tiles_v1"``) or a saved one (a ``.json`` or ``.pt`` path), verifying its checksum.

    Loaded backbones are cached by path and checksum, so asking again per frame costs next to nothing.

    Parameters
    ----------
    name_or_path : str or Path
        A name in :data:`PACKAGED_MODELS` or a file path.
    threads : int or None
        Torch threads for feature extraction; None keeps torch's setting.

    Raises
    ------
    FileNotFoundError
        No such backbone.
    BackboneIntegrityError
        The weights' SHA-256 differs from the metadata, or tensors are missing or of the wrong shape.

    Examples
    --------
    >>> load_backbone().name
    'tiles_v1'
    """
    json_path, metadata = sidecar(name_or_path, PACKAGED_MODELS, kind="backbone", required=("weights_file", "weights_sha256", "architecture"),
                                  error=BackboneIntegrityError, resave="re-save it with save_backbone")
    # checked on every call (a small file: well under a millisecond), so a replaced file is never served from the cache
    weights, actual = verified_weights(json_path, metadata, error=BackboneIntegrityError,
                                       remedy="re-install the package or retrain with python -m nion_autoem_fewshot.pretrain")
    key = f"{json_path.resolve()}|{actual}|{threads}"
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    encoder = TileEncoder(tuple(metadata["architecture"]["channels"]))
    state = torch.load(weights, map_location="cpu", weights_only=True)
    expected = encoder.state_dict()
    if set(state) != set(expected) or any(tuple(state[k].shape) != tuple(v.shape) for k, v in expected.items()):
        raise BackboneIntegrityError(f"weights in {weights} do not fit the architecture in {json_path} (tensor names or shapes differ)")
    encoder.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    encoder.eval()
    backbone = Backbone(encoder.fused(), metadata, threads)
    with _CACHE_LOCK:
        _CACHE[key] = backbone
    return backbone
