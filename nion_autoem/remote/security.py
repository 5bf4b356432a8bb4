"""Who may steer the microscope: a token, a handshake that cannot be replayed, and TLS.

- **Token**: ``secrets.token_urlsafe(32)``, kept in a file only its owner can
  read (mode 600).  A token file others can read is refused, as ssh refuses a
  readable private key.
- **Handshake**: the token never crosses the wire.  A client sends its name,
  a fresh nonce, the time, and an HMAC-SHA256 of these under the token; the
  server recomputes the HMAC and compares in constant time
  (``hmac.compare_digest``), refuses a time more than
  :data:`HANDSHAKE_WINDOW_S` off its own, and refuses a nonce it has already
  seen in that window.  A captured handshake is therefore useless: replayed,
  its nonce is known; later, its time is stale.
- **TLS**: a certificate the user gives, or one generated on first use (an
  ECDSA P-256 key, self-signed, kept beside the token, key file mode 600).
  Clients pin it by its SHA-256 fingerprint, which the server's address
  carries.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import os
import pathlib
import secrets
import socket
import ssl
import stat
import threading
import time
import typing

HANDSHAKE_VERSION = "nion-autoem-remote/1"
#: How far a handshake's time may be from the server's clock (Kerberos uses the same five minutes).
HANDSHAKE_WINDOW_S = 300.0
#: Longest client name kept in the journal.
MAX_CLIENT_NAME = 128
TOKEN_FILE = "token"
CERTIFICATE_FILE = "server-cert.pem"
KEY_FILE = "server-key.pem"


def default_state_dir() -> pathlib.Path:
    """Where the token, the certificate and the remote journal live: ``$NION_AUTOEM_REMOTE_DIR`` or ``~/.nion-autoem/remote``."""
    return pathlib.Path(os.environ.get("NION_AUTOEM_REMOTE_DIR", pathlib.Path.home() / ".nion-autoem" / "remote"))


def _check_private(path: pathlib.Path, what: str) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if os.name == "posix" and mode & 0o077:
        raise PermissionError(f"the {what} {path} can be read by others (mode {mode:o}); run 'chmod 600 {path}', or delete it to make a new one")


def _write_private(path: pathlib.Path, data: bytes) -> None:
    """Create ``path`` with mode 600 from the start (never readable by others, not even for a moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + f".{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def load_or_create_token(path: str | os.PathLike[str], *, renew: bool = False) -> tuple[str, bool]:
    """The server's token, made (and stored with mode 600) if there is none yet.

    Parameters
    ----------
    path : path-like
        The token file.
    renew : bool
        Replace the token: every client that had the old one is locked out.

    Returns
    -------
    token : str
    created : bool
        Whether a new token was made (then show it, once).
    """
    path = pathlib.Path(path)
    if path.exists() and not renew:
        _check_private(path, "token file")
        token = path.read_text(encoding="utf-8").strip()
        if len(token) < 32:
            raise ValueError(f"the token in {path} is too short ({len(token)} characters; at least 32); delete the file to make a new one")
        return token, False
    token = secrets.token_urlsafe(32)
    _write_private(path, (token + "\n").encode("utf-8"))
    return token, True


def load_or_create_certificate(certificate: str | os.PathLike[str], key: str | os.PathLike[str], *, hosts: typing.Sequence[str] = ("127.0.0.1",)) -> bool:
    """Make a self-signed certificate and key for ``hosts`` unless both files exist; returns whether they were made.

    The key is ECDSA P-256 (fast to make and to use), written with mode 600.
    """
    certificate, key = pathlib.Path(certificate), pathlib.Path(key)
    if certificate.exists() and key.exists():
        _check_private(key, "TLS key file")
        return False
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private_key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for host in {*hosts, "127.0.0.1", socket.gethostname()}:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if host:
                names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"nion-autoem remote on {socket.gethostname()}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(private_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=825)).add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(private_key, hashes.SHA256()))
    _write_private(key, private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    certificate.parent.mkdir(parents=True, exist_ok=True)
    certificate.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return True


def certificate_fingerprint(certificate: str | os.PathLike[str]) -> str:
    """SHA-256 of the certificate (DER), as 64 lowercase hex digits: what clients pin."""
    der = ssl.PEM_cert_to_DER_cert(pathlib.Path(certificate).read_text(encoding="ascii"))
    return hashlib.sha256(der).hexdigest()


def server_tls_context(certificate: str | os.PathLike[str], key: str | os.PathLike[str]) -> ssl.SSLContext:
    """TLS 1.2 or newer, with the server's certificate and key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(certificate), str(key))
    return context


def client_tls_context(*, fingerprint: str | None, cafile: str | os.PathLike[str] | None) -> ssl.SSLContext:
    """A client context: with a pinned fingerprint the chain is not checked (:func:`check_pinned` is), else a CA is."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if fingerprint is not None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif cafile is not None:
        context.load_verify_locations(cafile=str(cafile))
    else:
        context.load_default_certs()
    return context


def check_pinned(sock: ssl.SSLSocket, fingerprint: str) -> None:
    """Refuse a server whose certificate is not the pinned one (a man in the middle, or a new certificate)."""
    der = sock.getpeercert(binary_form=True)
    seen = hashlib.sha256(der or b"").hexdigest()
    if not hmac.compare_digest(seen, fingerprint.lower()):
        raise ssl.SSLCertVerificationError(f"the server's certificate has fingerprint {seen}, not the pinned {fingerprint}: "
                                           "another machine answered, or the server made a new certificate (ask for its new address)")


def _mac(token: str, client: str, nonce: str, timestamp: float) -> str:
    message = f"{HANDSHAKE_VERSION}\n{client}\n{nonce}\n{timestamp!r}".encode()
    return hmac.new(token.encode("utf-8"), message, hashlib.sha256).hexdigest()


def make_handshake(token: str, client: str) -> dict[str, typing.Any]:
    """What a client sends when it connects: its name, a nonce, the time and their HMAC under the token.

    Examples
    --------
    >>> verifier = HandshakeVerifier("t" * 43)
    >>> handshake = make_handshake("t" * 43, "alice@notebook")
    >>> verifier.verify(handshake)
    'alice@notebook'
    >>> verifier.verify(handshake)
    Traceback (most recent call last):
    ...
    PermissionError: handshake refused: this nonce was already used (a replayed handshake); connect again with a fresh one
    """
    nonce = secrets.token_hex(16)
    timestamp = time.time()
    return {"v": HANDSHAKE_VERSION, "client": client, "nonce": nonce, "time": timestamp, "mac": _mac(token, client, nonce, timestamp)}


class HandshakeVerifier:
    """Checks handshakes against the token; remembers nonces for the time window, so none is accepted twice.

    Parameters
    ----------
    token : str
        The server's token.
    window_s : float
        Largest difference between the client's clock and the server's.
    """

    def __init__(self, token: str, *, window_s: float = HANDSHAKE_WINDOW_S) -> None:
        self.__token = token
        self.__window_s = window_s
        self.__seen: dict[str, float] = {}
        self.__lock = threading.Lock()

    def verify(self, handshake: typing.Any) -> str:
        """The client's name if the handshake is good; otherwise ``PermissionError`` saying what is wrong."""
        if not isinstance(handshake, dict) or "mac" not in handshake:
            raise PermissionError("handshake refused: no token; connect with nion_autoem.remote.connect(uri, token) and the token the server showed")
        client, nonce, timestamp, mac = (handshake.get(k) for k in ("client", "nonce", "time", "mac"))
        if handshake.get("v") != HANDSHAKE_VERSION:
            raise PermissionError(f"handshake refused: version {handshake.get('v')!r} is not {HANDSHAKE_VERSION!r}; update nion-autoem on the client")
        if (not isinstance(client, str) or not 0 < len(client) <= MAX_CLIENT_NAME or not isinstance(nonce, str) or not 16 <= len(nonce) <= 128
                or not isinstance(timestamp, float) or not isinstance(mac, str) or len(mac) != 64):
            raise PermissionError("handshake refused: malformed (client name, nonce, time or MAC missing or of the wrong type)")
        now = time.time()
        if not abs(now - timestamp) <= self.__window_s:
            raise PermissionError(f"handshake refused: its time is {now - timestamp:+.0f} s off the server's clock (at most {self.__window_s:g} s); "
                                  "set the client's clock, or this is an old handshake replayed")
        if not hmac.compare_digest(mac, _mac(self.__token, client, nonce, timestamp)):
            raise PermissionError("handshake refused: wrong token")
        with self.__lock:
            for old in [n for n, t in self.__seen.items() if now - t > 2 * self.__window_s]:
                del self.__seen[old]
            if nonce in self.__seen:
                raise PermissionError("handshake refused: this nonce was already used (a replayed handshake); connect again with a fresh one")
            self.__seen[nonce] = now
        return client
