"""Saving and loading ensembles with versioned, checksummed metadata.

A model is two files side by side: ``NAME.pt`` (tensor weights only, loaded
with ``weights_only=True`` so no code is executed) and ``NAME.json`` (format
version, network configuration, class names, training recipe, metrics and the
SHA-256 of the weights file). The checksum is verified on every load, so a
truncated or swapped weights file fails loudly instead of finding wrong atoms.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import pathlib
import typing

import torch

from nion_autoem_elit import ensemble
from nion_autoem_elit import model

FORMAT_VERSION = 1
PACKAGED_MODELS = pathlib.Path(__file__).parent / "models"
# Short names resolve to the current packaged version of each default model.
DEFAULT_MODELS = {"mos2": "mos2_v1", "graphene": "graphene_v1"}


class ModelIntegrityError(ValueError):
    """The weights file does not match the checksum recorded in its metadata."""


def sha256_of(path: pathlib.Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_ensemble(ens: ensemble.Ensemble, path: str | pathlib.Path) -> pathlib.Path:
    """Write ``ens`` as ``path.pt`` + ``path.json``.

    Parameters
    ----------
    ens : Ensemble
        The ensemble; its ``metadata`` is stored alongside.
    path : str or Path
        Destination without or with the ``.pt`` suffix.

    Returns
    -------
    Path
        The metadata file written.

    Examples
    --------
    >>> import tempfile
    >>> ens = ensemble.Ensemble(model.EnsembleUNet(2, 3), ("background", "A", "B"))
    >>> folder = tempfile.mkdtemp()
    >>> load_ensemble(save_ensemble(ens, folder + "/tiny")).members
    2
    """
    weights_path = pathlib.Path(path).with_suffix(".pt")
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    # Half precision halves the shipped size; the members are evaluated in float32.
    state = {name: tensor.detach().to(torch.float16) for name, tensor in ens.network.state_dict().items()}
    torch.save(state, weights_path)
    metadata = {
        "format_version": FORMAT_VERSION,
        "name": weights_path.stem,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "network": ens.network.config(),
        "class_names": list(ens.class_names),
        "weights_file": weights_path.name,
        "weights_sha256": sha256_of(weights_path),
        **{k: v for k, v in ens.metadata.items() if k not in {"format_version", "weights_sha256", "weights_file"}},
    }
    json_path = weights_path.with_suffix(".json")
    json_path.write_text(json.dumps(metadata, indent=2, sort_keys=False) + "\n")
    return json_path


def resolve_model_path(name_or_path: str | pathlib.Path) -> pathlib.Path:
    """Metadata path of a packaged model name (``"mos2"``, ``"mos2_v1"``) or a file path."""
    text = str(name_or_path)
    if text in DEFAULT_MODELS:
        text = DEFAULT_MODELS[text]
    packaged = PACKAGED_MODELS / f"{text}.json"
    if packaged.exists():
        return packaged
    path = pathlib.Path(name_or_path)
    if path.suffix in {".pt", ""}:
        path = path.with_suffix(".json")
    if not path.exists():
        available = sorted(p.stem for p in PACKAGED_MODELS.glob("*.json"))
        raise FileNotFoundError(
            f"no ensemble called {str(name_or_path)!r}: not a packaged model {available} and no file {path}"
        )
    return path


def load_ensemble(name_or_path: str | pathlib.Path = "mos2") -> ensemble.Ensemble:
    """Load a packaged or saved ensemble, verifying its checksum.

    Parameters
    ----------
    name_or_path : str or Path
        ``"mos2"`` (default), ``"graphene"``, a versioned packaged name like
        ``"mos2_v1"``, or the path of a saved model (``.json`` or ``.pt``).

    Returns
    -------
    Ensemble

    Raises
    ------
    FileNotFoundError
        If there is no such model.
    ModelIntegrityError
        If the weights file's SHA-256 differs from the one in the metadata.

    Examples
    --------
    >>> load_ensemble("mos2").class_names
    ('background', 'Mo', 'S2', 'S1', 'W')
    """
    json_path = resolve_model_path(name_or_path)
    metadata: dict[str, typing.Any] = json.loads(json_path.read_text())
    version = int(metadata.get("format_version", 0))
    if version > FORMAT_VERSION:
        raise ValueError(f"{json_path} has format version {version}; this nion_autoem_elit reads up to {FORMAT_VERSION}")
    weights_path = json_path.with_name(metadata["weights_file"])
    if not weights_path.exists():
        raise FileNotFoundError(f"weights file {weights_path} named in {json_path} is missing")
    actual = sha256_of(weights_path)
    if actual != metadata["weights_sha256"]:
        raise ModelIntegrityError(
            f"checksum mismatch for {weights_path}: metadata says sha256 {metadata['weights_sha256']}, "
            f"file has {actual}; the file is corrupted or was replaced, re-install or retrain the model"
        )
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    network = model.build(metadata["network"])
    network.load_state_dict({name: tensor.to(torch.float32) for name, tensor in state.items()})
    network.eval()
    return ensemble.Ensemble(network, tuple(metadata["class_names"]), metadata)
