"""Saving and loading ensembles with versioned, checksummed metadata.

A model is two files side by side: ``NAME.pt`` (tensor weights only, loaded
with ``weights_only=True`` so no code is executed) and ``NAME.json`` (format
version, network configuration, class names, training recipe, metrics and the
SHA-256 of the weights file). The checksum is verified on every load, so a
truncated or swapped weights file fails loudly instead of finding wrong atoms.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import typing

import torch

from nion_autoem_checks.shipped import sha256_of
from nion_autoem_checks.shipped import verified_weights
from nion_autoem_elit import atoms
from nion_autoem_elit import ensemble
from nion_autoem_elit import model
from nion_autoem_elit import synthetic

FORMAT_VERSION = 1
PACKAGED_MODELS = pathlib.Path(__file__).parent / "models"
# Short names resolve to the current packaged version of each default model.
DEFAULT_MODELS = {"mos2": "mos2_v1", "graphene": "graphene_v1"}


class ModelIntegrityError(ValueError):
    """A saved model is damaged or inconsistent.

    The weights file does not match the checksum recorded in its metadata, or
    one of the two files is truncated, unreadable or does not describe the
    other. The message names the file and what is wrong with it.
    """


_REQUIRED_KEYS = ("weights_file", "weights_sha256", "network", "class_names")


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
    if not isinstance(ens, ensemble.Ensemble):
        raise TypeError(f"ens must be an Ensemble, got {type(ens).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or Path), got {type(path).__name__}")
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
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path must be a packaged model name or a path, got {type(name_or_path).__name__}")
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
    metadata = _read_metadata(json_path)
    weights_path, _ = verified_weights(json_path, metadata, error=ModelIntegrityError, remedy="re-install or retrain the model")
    try:
        network = model.build(metadata["network"])
    except (TypeError, ValueError) as error:
        raise ModelIntegrityError(f"network in {json_path} must be a valid EnsembleUNet configuration: {error}") from None
    class_names = metadata["class_names"]
    if not isinstance(class_names, list) or not all(isinstance(name, str) for name in class_names):
        raise ModelIntegrityError(f"class_names in {json_path} must be a list of class-name strings, background first, got {class_names!r}")
    if len(class_names) != network.classes:
        raise ModelIntegrityError(f"class_names in {json_path} must give one name per network class ({network.classes}), got {len(class_names)}: {class_names}")
    for key, parse in (("uncertainty_calibration", atoms.UncertaintyCalibration.from_dict), ("imaging_ranges", synthetic.ImagingRanges.from_dict)):
        if key in metadata:
            try:
                parse(metadata[key])
            except (TypeError, ValueError) as error:
                what = "valid imaging ranges" if key == "imaging_ranges" else "an uncertainty calibration"
                raise ModelIntegrityError(f"{key} in {json_path} must be {what}: {error}") from None
    state = _read_weights(weights_path)
    _check_state(state, network, weights_path, json_path)
    network.load_state_dict({name: tensor.to(torch.float32) for name, tensor in state.items()})
    network.eval()
    return ensemble.Ensemble(network, tuple(class_names), metadata)


def _read_metadata(json_path: pathlib.Path) -> dict[str, typing.Any]:
    """The metadata of a saved model, checked for the keys and types loading relies on."""
    try:
        text = json_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ModelIntegrityError(f"model metadata {json_path} must be valid UTF-8 JSON, but byte {error.start} is not UTF-8; "
                                  "the file is corrupted: re-save or re-install the model") from None
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as error:
        raise ModelIntegrityError(f"model metadata {json_path} must be valid JSON, but it is not ({error.msg} at line {error.lineno}, "
                                  f"column {error.colno}); the file is truncated or corrupted: re-save or re-install the model") from None
    if not isinstance(metadata, dict):
        raise ModelIntegrityError(f"model metadata {json_path} must be a JSON object, got {type(metadata).__name__}")
    missing = [key for key in _REQUIRED_KEYS if key not in metadata]
    if missing:
        raise ModelIntegrityError(f"model metadata {json_path} must have the keys {list(_REQUIRED_KEYS)}, missing {missing}; "
                                  "it was not written by save_ensemble or was edited: re-save the model")
    version = metadata.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ModelIntegrityError(f"format_version in {json_path} must be a whole number, got {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"format_version in {json_path} must be at most {FORMAT_VERSION} for this nion_autoem_elit, got {version}; "
                         "update nion_autoem_elit to read it")
    weights_file = metadata["weights_file"]
    if not isinstance(weights_file, str) or not weights_file or pathlib.Path(weights_file).name != weights_file:
        raise ModelIntegrityError(f"weights_file in {json_path} must be a file name next to it, got {weights_file!r}")
    if not isinstance(metadata["weights_sha256"], str):
        raise ModelIntegrityError(f"weights_sha256 in {json_path} must be a hex SHA-256 string, got {metadata['weights_sha256']!r}")
    return metadata


def _read_weights(weights_path: pathlib.Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, OSError, pickle errors ... for a damaged file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ModelIntegrityError(f"weights file {weights_path} must be a torch state dict written by save_ensemble, but it could not be read "
                                  f"({type(error).__name__}: {first_line}); re-save or re-install the model") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ModelIntegrityError(f"weights file {weights_path} must hold a state dict of tensors, got {type(state).__name__}")
    return state


def _check_state(state: dict[str, torch.Tensor], network: model.EnsembleUNet, weights_path: pathlib.Path, json_path: pathlib.Path) -> None:
    """Every tensor the network needs, with its shape: a clear error instead of torch's ``load_state_dict`` one."""
    expected = network.state_dict()
    problem = f"weights in {weights_path} do not fit the network described in {json_path}"
    missing = [name for name in expected if name not in state]
    unexpected = [name for name in state if name not in expected]
    if missing or unexpected:
        raise ModelIntegrityError(f"{problem}: missing tensors {missing}, unexpected tensors {unexpected}")
    for name, tensor in expected.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise ModelIntegrityError(f"{problem}: tensor {name!r} must have shape {tuple(tensor.shape)}, got {tuple(state[name].shape)}")
