"""The remote plan-queue server: a Pyro5 daemon that answers an allow-list of calls, nothing else.

Pyro5 provides the transport (a listening socket, a worker thread per
connection) and the message framing; this module reads every message
itself, so that what reaches Python code is decided here:

- **the handshake**: TLS first (when on), then a Pyro ``CONNECT`` whose
  payload must carry a valid token MAC (:mod:`nion_autoem.remote.security`);
  a client that sends nothing is dropped after ``handshake_timeout_s``;
- **requests**: msgpack only, no compression, no batches, no one-way calls,
  at most :data:`~nion_autoem.remote.wire.MAX_REQUEST_BYTES`, refused before
  the payload is read; then only the object :data:`~nion_autoem.remote.wire.OBJECT_ID`
  and only the methods in :data:`EXPOSED` (no attributes, no dunders, no
  Pyro daemon internals);
- **errors** go back as plain ``PermissionError``, ``TypeError``,
  ``ValueError``, ``LookupError``, ``AttributeError`` or ``RuntimeError`` with
  a sentence, never a server traceback;
- **the remote journal** records every connection, command and refusal with
  the client's name and address (:mod:`nion_autoem.remote.audit`).

A client that disconnects mid-plan changes nothing: the run belongs to the
server, keeps going within its budget, and any client with the token can
watch or stop it later.  Closing the server stops what it started.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import logging
import os
import pathlib
import socket
import ssl
import threading
import time
import typing

from Pyro5 import config as pyro_config
from Pyro5 import errors
from Pyro5 import protocol
from Pyro5.server import Daemon
from Pyro5.server import expose

from nion_autoem.remote import security
from nion_autoem.remote import wire
from nion_autoem.remote.audit import AuditJournal
from nion_autoem.remote.plan_queue import Launcher
from nion_autoem.remote.plan_queue import PlanQueue
from nion_autoem.remote.protocol import describe_plans

if typing.TYPE_CHECKING:
    from nion_autoem.runner import ExperimentRunner

_logger = logging.getLogger(__name__)

#: Everything a client can call.
EXPOSED = frozenset({"list_plans", "submit", "runs", "progress", "pause", "resume", "stop", "products", "product", "journal", "live"})
#: Calls that change something: journaled durably, always.
CONTROL = frozenset({"submit", "pause", "resume", "stop"})
#: The port a server listens on unless told otherwise (0 takes any free one).
DEFAULT_PORT = 47211
#: Connections at once; more are refused with a sentence (Pyro5's worker pool holds 80 threads).
MAX_SESSIONS = 32
AUDIT_FILE = "remote-journal.jsonl"
_REPLY_TYPES: tuple[type[Exception], ...] = (PermissionError, TypeError, ValueError, LookupError, AttributeError, RuntimeError)
_PYRO_CONFIG_LOCK = threading.Lock()
_calling = threading.local()


@dataclasses.dataclass
class Session:
    """An authenticated connection: who, from where, since when."""

    client: str
    peer: str
    since: float = dataclasses.field(default_factory=time.time)
    calls: int = 0

    @property
    def identity(self) -> str:
        return f"{self.client} ({self.peer})"


_F = typing.TypeVar("_F", bound=typing.Callable[..., typing.Any])


def _exposed(method: _F) -> _F:
    """Pyro5's ``@expose`` (which marks the method as remotely callable), typed."""
    return typing.cast(_F, expose(method))


def _caller() -> str:
    session = getattr(_calling, "session", None)
    return session.identity if session is not None else "(unknown)"


class RemoteExperiments:
    """The one object a client talks to; each exposed method is one line into the plan queue."""

    def __init__(self, queue: PlanQueue) -> None:
        self.__queue = queue

    @_exposed
    def list_plans(self) -> dict[str, typing.Any]:
        """The allow-listed plans and their parameters."""
        return describe_plans()

    @_exposed
    def submit(self, plan_name: typing.Any, parameters: typing.Any = None, budget: typing.Any = None) -> dict[str, typing.Any]:
        """Check a plan and its parameters and queue it (see :meth:`PlanQueue.submit`)."""
        return self.__queue.submit(plan_name, parameters, budget, client=_caller())

    @_exposed
    def runs(self) -> list[dict[str, typing.Any]]:
        """Every run the server remembers."""
        return self.__queue.runs()

    @_exposed
    def progress(self, run: typing.Any = None) -> dict[str, typing.Any]:
        """Where a run is."""
        return self.__queue.progress(run)

    @_exposed
    def pause(self, run: typing.Any = None, immediate: typing.Any = False) -> dict[str, typing.Any]:
        """Pause the running plan; the beam is blanked while paused."""
        return self.__queue.pause(run, immediate=immediate)

    @_exposed
    def resume(self, run: typing.Any = None) -> dict[str, typing.Any]:
        """Continue the paused plan."""
        return self.__queue.resume(run)

    @_exposed
    def stop(self, run: typing.Any = None) -> dict[str, typing.Any]:
        """Stop a run, or everything; the beam is safe before this returns."""
        return self.__queue.stop(run, client=_caller())

    @_exposed
    def products(self, run: typing.Any = None) -> list[dict[str, typing.Any]]:
        """What a run has published."""
        return self.__queue.products(run)

    @_exposed
    def product(self, key: typing.Any, run: typing.Any = None) -> dict[str, typing.Any]:
        """One product, its data as raw bytes."""
        return self.__queue.product(key, run)

    @_exposed
    def journal(self, run: typing.Any = None, since: typing.Any = 0, limit: typing.Any = 1000) -> dict[str, typing.Any]:
        """A run's journal lines."""
        return self.__queue.journal(run, since, limit)

    @_exposed
    def live(self, run: typing.Any = None, since_step: typing.Any = -1) -> dict[str, typing.Any] | None:
        """The newest measurement of a run."""
        return self.__queue.live(run, since_step)


def _peer(conn: typing.Any) -> str:
    try:
        host, port = conn.sock.getpeername()[:2]
        return f"{host}:{port}"
    except (OSError, ValueError):
        return "(unknown address)"


def _reply_exception(e: Exception) -> Exception:
    """The nearest plain built-in exception with the same sentence (a client rebuilds only built-ins)."""
    kind = next((t for t in _REPLY_TYPES if isinstance(e, t)), RuntimeError)
    return kind(str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e))


class _Daemon(Daemon):  # type: ignore[misc]  # Pyro5 is untyped
    """Pyro5's threaded daemon with our handshake and our request handling in place of its own."""

    def __init__(self, host: str, port: int, *, api: RemoteExperiments, verifier: security.HandshakeVerifier, tls: ssl.SSLContext | None,
                 audit: AuditJournal, max_sessions: int, handshake_timeout_s: float, max_request_bytes: int) -> None:
        with _PYRO_CONFIG_LOCK:
            # one thread per connection: a TLS handshake or a slow client must never hold up the others
            saved, pyro_config.SERVERTYPE = pyro_config.SERVERTYPE, "thread"
            try:
                super().__init__(host=host, port=port)
            finally:
                pyro_config.SERVERTYPE = saved
        self.__api = api
        self.__verifier = verifier
        self.__tls = tls
        self.__audit = audit
        self.__max_sessions = max_sessions
        self.__handshake_timeout_s = handshake_timeout_s
        self.__max_request_bytes = max_request_bytes
        self.__sessions: dict[typing.Any, Session] = {}
        self.__lock = threading.Lock()

    # --- connecting -----------------------------------------------------------------

    def _handshake(self, conn: typing.Any, denied_reason: str | None = None) -> bool:
        peer = _peer(conn)
        if denied_reason:
            self.__audit.write("connect", "refused", client=None, peer=peer, detail=f"denied: {denied_reason}")
            return False
        try:
            conn.sock.settimeout(self.__handshake_timeout_s)
            if self.__tls is not None:
                conn.sock = self.__tls.wrap_socket(conn.sock, server_side=True)
        except (OSError, ValueError) as e:
            self.__audit.write("connect", "refused", client=None, peer=peer, detail=f"TLS handshake failed: {e}")
            return False
        try:
            header = wire.parse_header(bytes(conn.recv(wire.HEADER_SIZE)))
            problem = wire.refusal(header, (protocol.MSG_CONNECT,), wire.MAX_HANDSHAKE_BYTES)
            if problem:
                return self.__refuse_connect(conn, header.seq, peer, problem)
            data = wire.decode_plain(wire.read_message(conn.recv, header).data)
        except errors.TimeoutError:
            self.__audit.write("connect", "refused", client=None, peer=peer, detail=f"sent no handshake within {self.__handshake_timeout_s:g} s")
            return False
        except (errors.ConnectionClosedError, OSError) as e:
            self.__audit.write("connect", "refused", client=None, peer=peer, detail=f"closed the connection during the handshake ({e})")
            return False
        except Exception as e:  # garbage: not a Pyro message, or a payload that is not msgpack
            self.__audit.write("connect", "refused", client=None, peer=peer, detail=f"not a nion-autoem client: {type(e).__name__}: {e}")
            return False
        try:
            if not isinstance(data, dict):
                raise PermissionError("handshake refused: malformed")
            if data.get("object") != wire.OBJECT_ID:
                raise LookupError(f"no object {str(data.get('object'))[:64]!r} here; this server offers only {wire.OBJECT_ID!r}")
            client = self.__verifier.verify(data.get("handshake"))
            session = Session(client, peer)
            with self.__lock:
                if len(self.__sessions) >= self.__max_sessions:
                    raise ConnectionRefusedError(f"too many connections ({self.__max_sessions}) to this server; close some and connect again")
                self.__sessions[conn] = session
        except Exception as e:
            return self.__refuse_connect(conn, header.seq, peer, str(e))
        conn.sock.settimeout(None)  # an authenticated notebook may sit idle for hours
        with contextlib.suppress(OSError):
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        reply = {"handshake": {"server": "nion-autoem", "protocol": security.HANDSHAKE_VERSION, "client": client},
                 "meta": {"methods": sorted(EXPOSED), "oneway": [], "attrs": []}}
        try:
            conn.send(wire.encode_message(protocol.MSG_CONNECTOK, header.seq, wire.SERIALIZER.dumps(reply)))
        except (errors.CommunicationError, OSError):
            with self.__lock:
                self.__sessions.pop(conn, None)
            return False
        self.__audit.write("connect", "ok", client=client, peer=peer, detail="TLS" if self.__tls is not None else "no TLS")
        return True

    def __refuse_connect(self, conn: typing.Any, seq: int, peer: str, reason: str) -> bool:
        self.__audit.write("connect", "refused", client=None, peer=peer, detail=reason)
        with contextlib.suppress(errors.CommunicationError, OSError):
            conn.send(wire.encode_message(protocol.MSG_CONNECTFAIL, seq, wire.SERIALIZER.dumps(reason)))
        return False

    def clientDisconnect(self, conn: typing.Any) -> None:
        with self.__lock:
            session = self.__sessions.pop(conn, None)
        if session is not None:
            self.__audit.write("disconnect", "ok", client=session.client, peer=session.peer, durable=False,
                               detail=f"after {time.time() - session.since:.1f} s and {session.calls} calls; its runs go on")

    # --- requests -------------------------------------------------------------------

    def handleRequest(self, conn: typing.Any) -> None:
        with self.__lock:
            session = self.__sessions.get(conn)
        if session is None:
            raise errors.SecurityError("a request on a connection that never authenticated")
        try:
            header = wire.parse_header(bytes(conn.recv(wire.HEADER_SIZE)))
        except errors.ProtocolError as e:
            self.__audit.write("(message)", "refused", client=session.client, peer=session.peer, detail=f"malformed message: {e}; connection closed")
            raise errors.SecurityError(str(e)) from e  # the stream is out of step: nothing after this can be trusted
        problem = wire.refusal(header, (protocol.MSG_INVOKE, protocol.MSG_PING), self.__max_request_bytes)
        if problem:
            self.__audit.write("(message)", "refused", client=session.client, peer=session.peer, detail=f"{problem}; connection closed")
            self.__send_exception(conn, header.seq, PermissionError(f"refused: {problem}; the connection is closed"))
            raise errors.SecurityError(problem)  # its payload is left unread, so the connection cannot go on
        message = wire.read_message(conn.recv, header)
        if header.type == protocol.MSG_PING:
            conn.send(wire.encode_message(protocol.MSG_PING, header.seq, b"pong"))
            return
        session.calls += 1
        try:
            call = wire.decode_plain(message.data)
        except Exception as e:
            self.__refuse(conn, header.seq, session, "(message)", ValueError(f"malformed request: not plain msgpack data ({str(e)[:100] or type(e).__name__})"))
            return
        if not isinstance(call, list) or len(call) != 4:
            self.__refuse(conn, header.seq, session, "(message)", ValueError("malformed request: expected (object, method, arguments, keyword arguments)"))
            return
        target, method, vargs, kwargs = call
        name = method[:64] if isinstance(method, str) else repr(method)[:64]
        if target != wire.OBJECT_ID:
            self.__refuse(conn, header.seq, session, name, LookupError(f"no object {str(target)[:64]!r} here; this server offers only {wire.OBJECT_ID!r}"))
            return
        if not isinstance(method, str) or method not in EXPOSED:
            self.__refuse(conn, header.seq, session, name, AttributeError(f"{name!r} is not something this server does; it answers: {', '.join(sorted(EXPOSED))}"))
            return
        if not isinstance(vargs, list) or not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            self.__refuse(conn, header.seq, session, name, TypeError(f"{name}: arguments must be a list and keyword arguments a map of names"))
            return
        _calling.session = session
        try:
            result = getattr(self.__api, method)(*vargs, **kwargs)
        except _REPLY_TYPES as e:
            self.__refuse(conn, header.seq, session, name, _reply_exception(e))
            return
        except Exception as e:
            _logger.exception("remote %s from %s failed", name, session.identity)
            self.__audit.write(name, "error", client=session.client, peer=session.peer, detail=f"{type(e).__name__}: {e}")
            self.__send_exception(conn, header.seq, RuntimeError(f"the server could not {name}: {type(e).__name__}: {e}"))
            return
        finally:
            _calling.session = None
        reply = wire.encode_message(protocol.MSG_RESULT, header.seq, wire.SERIALIZER.dumps(result))
        # journaled before the reply leaves: a client that has its answer can rely on the journal having it too
        self.__audit.write(name, "ok", client=session.client, peer=session.peer, durable=name in CONTROL, detail=_summary(name, vargs, kwargs, result))
        conn.send(reply)

    def __refuse(self, conn: typing.Any, seq: int, session: Session, command: str, error: Exception) -> None:
        self.__audit.write(command, "refused", client=session.client, peer=session.peer, detail=f"{type(error).__name__}: {error}")
        self.__send_exception(conn, seq, error)

    @staticmethod
    def __send_exception(conn: typing.Any, seq: int, error: Exception) -> None:
        with contextlib.suppress(errors.CommunicationError, OSError):
            conn.send(wire.encode_message(protocol.MSG_RESULT, seq, wire.SERIALIZER.dumps(error), flags=protocol.FLAGS_EXCEPTION))

    # --- closing ----------------------------------------------------------------------

    @property
    def session_count(self) -> int:
        with self.__lock:
            return len(self.__sessions)

    def drop_sessions(self) -> None:
        """Hang up on every client (their worker threads then end)."""
        with self.__lock:
            conns = list(self.__sessions)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)


def _summary(name: str, vargs: list[typing.Any], kwargs: dict[str, typing.Any], result: typing.Any) -> str:
    """A line for the journal: what was asked and, for control calls, what came of it (data is never journaled)."""
    if name not in CONTROL:
        return ""
    asked = ", ".join([repr(v)[:200] for v in vargs] + [f"{k}={v!r}"[:200] for k, v in kwargs.items()])
    return f"{name}({asked}) -> {repr(result)[:400]}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RemoteServer:
    """The plan-queue server: listening, authenticating, journaling; runs plans through ``launcher``.

    Parameters
    ----------
    launcher : Launcher
        Starts a plan and returns its running runner (see :mod:`nion_autoem.remote.plan_queue`).
    host : str
        Address to listen on: loopback unless you mean the network to reach it.
    port : int
        TCP port (default :data:`DEFAULT_PORT`); 0 takes a free one (see :attr:`uri`).
    tls : bool
        Encrypt (default).  Without TLS only a loopback address is allowed.
    certificate, key : path-like, optional
        Your own certificate and key; by default one is made on first use in ``state_dir``.
    state_dir : path-like, optional
        Token, certificate and remote journal (default :func:`~nion_autoem.remote.security.default_state_dir`).
    renew_token : bool
        Make a new token (clients with the old one are locked out).
    max_sessions : int
        Connections at once.
    handshake_timeout_s : float
        A connection that has not authenticated within this is dropped.
    max_request_bytes : int
        Largest request.
    busy : callable, optional
        Returns why the microscope is busy (the panel's own run), or None; remote runs wait while it is.

    Examples
    --------
    >>> server = RemoteServer(launcher, port=0)  # doctest: +SKIP
    >>> print(server.uri, server.token)  # doctest: +SKIP
    >>> server.close()  # doctest: +SKIP
    """

    def __init__(self, launcher: Launcher, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT, tls: bool = True, certificate: str | os.PathLike[str] | None = None,
                 key: str | os.PathLike[str] | None = None, state_dir: str | os.PathLike[str] | None = None, renew_token: bool = False,
                 max_sessions: int = MAX_SESSIONS, handshake_timeout_s: float = 5.0, max_request_bytes: int = wire.MAX_REQUEST_BYTES,
                 busy: typing.Callable[[], str | None] | None = None) -> None:
        if not isinstance(host, str) or not host:
            raise TypeError(f"host must be an address such as '127.0.0.1', got {host!r}")
        if not tls and not _is_loopback(host):
            raise ValueError(f"without TLS the server listens on loopback only, not {host!r}: commands and the handshake would cross the network in clear; "
                             "keep tls=True (or reach a loopback server through an SSH tunnel)")
        if (certificate is None) != (key is None):
            raise ValueError("give certificate and key together (your own TLS identity), or neither (one is made on first use)")
        self.state_dir = pathlib.Path(state_dir) if state_dir is not None else security.default_state_dir()
        self.token_file = self.state_dir / security.TOKEN_FILE
        self.__token, self.token_created = security.load_or_create_token(self.token_file, renew=renew_token)
        context: ssl.SSLContext | None = None
        fingerprint: str | None = None
        if tls:
            certificate_path = pathlib.Path(certificate) if certificate is not None else self.state_dir / security.CERTIFICATE_FILE
            key_path = pathlib.Path(key) if key is not None else self.state_dir / security.KEY_FILE
            if certificate is None:
                security.load_or_create_certificate(certificate_path, key_path, hosts=(host,))
            context = security.server_tls_context(certificate_path, key_path)
            fingerprint = security.certificate_fingerprint(certificate_path)
        self.audit = AuditJournal(self.state_dir / AUDIT_FILE)
        self.queue = PlanQueue(launcher, busy=busy)
        try:
            self.__daemon = _Daemon(host, port, api=RemoteExperiments(self.queue), verifier=security.HandshakeVerifier(self.__token), tls=context,
                                    audit=self.audit, max_sessions=max_sessions, handshake_timeout_s=handshake_timeout_s, max_request_bytes=max_request_bytes)
        except Exception:
            self.queue.close()
            self.audit.close()
            raise
        bound_port = int(self.__daemon.locationStr.rsplit(":", 1)[1])
        self.address = wire.Address(host, bound_port, tls, fingerprint)
        self.__closed = False
        self.__thread = threading.Thread(target=self.__daemon.requestLoop, name=f"nion-autoem remote server {bound_port}", daemon=True)
        self.__thread.start()
        self.audit.write("start", "ok", client=None, peer=None, detail=f"listening on {self.address}")

    @property
    def uri(self) -> str:
        """The address clients connect to (it pins the TLS certificate; it is not secret)."""
        return str(self.address)

    @property
    def token(self) -> str:
        """The secret a client needs: show it once, to the person who will connect."""
        return self.__token

    @property
    def fingerprint(self) -> str | None:
        return self.address.fingerprint

    @property
    def connections(self) -> int:
        """Authenticated connections now."""
        return int(self.__daemon.session_count)

    @property
    def active_runner(self) -> ExperimentRunner | None:
        """The runner of the remote run in progress (for the panel: show it, stop it)."""
        return self.queue.active_runner

    def close(self) -> None:
        """Stop the running plan (the beam is made safe), cancel the queue, hang up on every client, stop listening.  Safe to call twice."""
        if self.__closed:
            return
        self.__closed = True
        try:
            self.queue.close("the remote server was switched off")
        finally:
            self.__daemon.drop_sessions()
            self.__daemon.shutdown()
            self.__thread.join(10.0)
            deadline = time.monotonic() + 5.0
            while self.__daemon.session_count and time.monotonic() < deadline:
                time.sleep(0.01)  # the workers notice the hang-up and end
            self.audit.write("close", "ok", client=None, peer=None, detail=f"stopped listening on {self.address}")
            self.audit.close()

    def __enter__(self) -> RemoteServer:
        return self

    def __exit__(self, *exc: typing.Any) -> None:
        self.close()
