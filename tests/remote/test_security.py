"""The pieces under the server: the token file, the certificate, the handshake, arrays on the wire, addresses."""

from __future__ import annotations

import os
import pathlib
import stat

import numpy
import pytest

from nion_autoem.remote import arrays
from nion_autoem.remote import security
from nion_autoem.remote import wire


def test_the_token_is_made_once_with_mode_600_and_kept(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "state" / "token"
    token, created = security.load_or_create_token(path)
    assert created and len(token) >= 43 and stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created_again = security.load_or_create_token(path)
    assert again == token and not created_again
    renewed, _ = security.load_or_create_token(path, renew=True)
    assert renewed != token and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_token_file_others_can_read_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "token"
    security.load_or_create_token(path)
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        security.load_or_create_token(path)


def test_a_certificate_is_made_on_first_use_and_pinned_by_its_fingerprint(tmp_path: pathlib.Path) -> None:
    certificate, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    assert security.load_or_create_certificate(certificate, key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    fingerprint = security.certificate_fingerprint(certificate)
    assert len(fingerprint) == 64 and not security.load_or_create_certificate(certificate, key)  # kept, not remade
    assert security.certificate_fingerprint(certificate) == fingerprint
    security.server_tls_context(certificate, key)  # a usable TLS identity


def test_handshakes_need_the_token_a_fresh_nonce_and_the_right_time() -> None:
    verifier = security.HandshakeVerifier("k" * 43, window_s=60)
    assert verifier.verify(security.make_handshake("k" * 43, "bob")) == "bob"
    with pytest.raises(PermissionError, match="wrong token"):
        verifier.verify(security.make_handshake("j" * 43, "bob"))
    forged = security.make_handshake("k" * 43, "bob")
    forged["client"] = "alice"  # the MAC covers the name: nobody can claim to be someone else
    with pytest.raises(PermissionError, match="wrong token"):
        verifier.verify(forged)
    for bad in (None, "hello", {"mac": 1}, {**security.make_handshake("k" * 43, "bob"), "time": "now"}):
        with pytest.raises(PermissionError):
            verifier.verify(bad)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int16", "uint8", "complex64", "bool", ">f4"])
def test_arrays_travel_as_bytes_and_come_back_equal(dtype: str) -> None:
    original = (numpy.arange(24) % 7).astype(dtype).reshape(2, 3, 4)
    encoded = arrays.encode_array(original)
    assert isinstance(encoded["data"], bytes) and encoded["shape"] == [2, 3, 4]
    decoded = arrays.decode_array(wire.decode_plain(wire.SERIALIZER.dumps(encoded)))
    assert decoded.dtype == original.dtype.newbyteorder("<") if original.dtype.byteorder == ">" else decoded.dtype == original.dtype
    assert numpy.array_equal(decoded, original)


@pytest.mark.parametrize(("encoded", "error", "words"), [
    ({"dtype": "|O", "shape": [1], "data": b"\0" * 8}, TypeError, "must be numeric"),
    ({"dtype": "V8", "shape": [1], "data": b"\0" * 8}, TypeError, "must be numeric"),
    ({"dtype": "<f4", "shape": [3], "data": b"\0" * 8}, ValueError, "has 12 bytes, got 8"),
    ({"dtype": "<f4", "shape": [-1], "data": b""}, TypeError, "whole numbers >= 0"),
    ({"dtype": "<f4", "shape": [1 << 40], "data": b""}, ValueError, "larger than"),
    ({"dtype": "<f4", "shape": [1], "data": "text"}, TypeError, "must be bytes"),
    ([1.0, 2.0], TypeError, "exactly 'dtype', 'shape' and 'data'"),
])
def test_arrays_that_are_not_numeric_or_do_not_add_up_are_refused(encoded: object, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        arrays.decode_array(encoded)


def test_addresses_parse_and_refuse_what_is_not_one() -> None:
    pinned = wire.parse_address("nion-autoem+tls://[::1]:4711?sha256=" + "AB" * 32)
    assert pinned.host == "::1" and pinned.fingerprint == "ab" * 32 and str(pinned).startswith("nion-autoem+tls://[::1]:4711")
    for bad in ("PYRO:obj@127.0.0.1:4711", "nion-autoem://127.0.0.1", "nion-autoem://127.0.0.1:99999", "nion-autoem://127.0.0.1:1?sha256=" + "ab" * 32):
        with pytest.raises(ValueError):
            wire.parse_address(bad)
