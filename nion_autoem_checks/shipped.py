"""Shipped model files: a weights file named in a JSON sidecar with its SHA-256, checked before it is used.

Every package that ships a trained network (ELIT's ensembles, the few-shot
backbone, the DKL patch encoder, the forecasters) stores it as ``<name>.pt``
beside ``<name>.json``; the JSON names the weights file and holds its
checksum. These are the lookups and checks they share, with the same
messages everywhere.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import typing


def sha256_of(path: pathlib.Path) -> str:
    """Hex SHA-256 of a file, read in blocks of 1 MiB."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar(name_or_path: str | pathlib.Path, folder: pathlib.Path, *, kind: str, required: typing.Sequence[str],
            error: type[Exception], resave: str) -> tuple[pathlib.Path, dict[str, typing.Any]]:
    """The JSON path and metadata of a shipped model (a name in ``folder``) or a saved one (a ``.json`` or ``.pt`` path).

    Raises ``FileNotFoundError`` naming the shipped ones when there is no
    such model, and ``error`` when a key in ``required`` is missing
    (``resave`` says how to write the file again).
    """
    text = str(name_or_path)
    packaged = folder / f"{text}.json"
    json_path = packaged if packaged.exists() else pathlib.Path(text).with_suffix(".json")
    if not json_path.exists():
        available = sorted(p.stem for p in folder.glob("*.json"))
        raise FileNotFoundError(f"no {kind} called {text!r}: not a shipped {kind} {available} and no file {json_path}")
    metadata = dict(json.loads(json_path.read_text()))
    for key in required:
        if key not in metadata:
            raise error(f"{kind} metadata {json_path} must have the key {key!r}; {resave}")
    return json_path, metadata


def verified_weights(json_path: pathlib.Path, metadata: typing.Mapping[str, typing.Any], *, error: type[Exception], remedy: str,
                     checksum_key: str = "weights_sha256") -> tuple[pathlib.Path, str]:
    """The weights file named in ``metadata`` and its checksum, once it matches the one ``metadata`` holds.

    Read on every call (the files are small), so a replaced file is never
    taken for the one that was checked before. Raises ``FileNotFoundError``
    when the file is missing and ``error`` when the checksum differs
    (``remedy`` says what to do about it).
    """
    weights = json_path.with_name(str(metadata["weights_file"]))
    if not weights.is_file():
        raise FileNotFoundError(f"weights file {weights} named in {json_path} is missing")
    actual = sha256_of(weights)
    if actual != metadata[checksum_key]:
        raise error(f"checksum mismatch for {weights}: metadata says sha256 {metadata[checksum_key]}, the file has {actual}; "
                    f"the file is damaged or was replaced: {remedy}")
    return weights, actual
