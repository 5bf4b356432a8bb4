"""The client: the console's calls, from a notebook on any machine that can reach the server.

>>> from nion_autoem.remote import connect                                       # doctest: +SKIP
>>> scope = connect("nion-autoem+tls://10.0.0.5:4711?sha256=...", token)      # doctest: +SKIP
>>> run = scope.start_experiment("dkl-spectroscopy", measurements=40, band_eV=(1.2, 2.1))  # doctest: +SKIP
>>> run.wait(on_progress=print)                                                  # doctest: +SKIP
>>> prediction = run.product("prediction").data                                 # doctest: +SKIP

Only Pyro5's wire format, msgpack and numpy are needed here (no Swift, no
torch), so it installs anywhere.  One connection per client object, one call
at a time on it (calls from several threads take turns); if the connection
is lost, the next call connects again (the call that saw the loss is not
repeated: it may or may not have reached the server).
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import pathlib
import socket
import threading
import time
import typing

from Pyro5 import errors
from Pyro5 import protocol

from nion_autoem.remote import security
from nion_autoem.remote import wire
from nion_autoem.remote.arrays import CalibratedArray
from nion_autoem.remote.arrays import decode_calibrated

#: States after which a run changes no more.
FINAL_STATES = frozenset({"finished", "stopped", "failed", "cancelled"})


class _Connection:
    """One authenticated socket to the server; ``call`` sends one request and waits for its reply."""

    def __init__(self, address: wire.Address, token: str, client: str, *, cafile: str | os.PathLike[str] | None, timeout_s: float) -> None:
        self.address = address
        self.__lock = threading.Lock()
        self.__seq = 0
        sock = socket.create_connection((address.host, address.port), timeout=timeout_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small commands must not wait for Nagle
            if address.tls:
                context = security.client_tls_context(fingerprint=address.fingerprint, cafile=cafile)
                sock = context.wrap_socket(sock, server_hostname=None if address.fingerprint else address.host)
                if address.fingerprint:
                    security.check_pinned(sock, address.fingerprint)
            self.__sock = sock
            data = wire.SERIALIZER.dumps({"handshake": security.make_handshake(token, client), "object": wire.OBJECT_ID})
            self.__sock.sendall(wire.encode_message(protocol.MSG_CONNECT, 0, data))
            header, payload = self.__receive()
            if header.type == protocol.MSG_CONNECTFAIL:
                raise PermissionError(f"{address}: {wire.SERIALIZER.loads(payload)}")
            if header.type != protocol.MSG_CONNECTOK:
                raise ConnectionError(f"{address} answered the handshake with message type {header.type}: is it a nion-autoem server?")
        except BaseException:
            sock.close()
            raise

    def __recv(self, size: int) -> bytes:
        buffer = bytearray(size)
        view = memoryview(buffer)
        received = 0
        while received < size:
            n = self.__sock.recv_into(view[received:], size - received)
            if n == 0:
                raise ConnectionError(f"{self.address} closed the connection")
            received += n
        return bytes(buffer)

    def __receive(self) -> tuple[wire.Header, bytes]:
        header = wire.parse_header(self.__recv(wire.HEADER_SIZE))
        if header.serializer_id != wire.SERIALIZER_ID or header.flags & protocol.FLAGS_COMPRESSED:
            raise ConnectionError(f"{self.address} answered in a format this client does not read (serializer {header.serializer_id}, flags {header.flags})")
        if header.payload_size > wire.MAX_RESPONSE_BYTES:
            raise ConnectionError(f"{self.address} sent a reply of {header.payload_size} bytes, more than the {wire.MAX_RESPONSE_BYTES} accepted")
        message = wire.read_message(self.__recv, header)
        return header, bytes(message.data)

    def call(self, method: str, *args: typing.Any, **kwargs: typing.Any) -> typing.Any:
        with self.__lock:
            self.__seq = (self.__seq + 1) & 0xFFFF
            self.__sock.sendall(wire.encode_message(protocol.MSG_INVOKE, self.__seq, wire.SERIALIZER.dumpsCall(wire.OBJECT_ID, method, args, kwargs)))
            header, payload = self.__receive()
            if header.seq != self.__seq:
                raise ConnectionError(f"{self.address} answered request {header.seq}, not {self.__seq}; connect again")
            result = wire.SERIALIZER.loads(payload)  # rebuilds the server's PermissionError, ValueError, ... with their sentences
        if header.flags & protocol.FLAGS_EXCEPTION:
            raise result if isinstance(result, Exception) else RuntimeError(str(result))
        return result

    def close(self) -> None:
        try:
            self.__sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.__sock.close()


@dataclasses.dataclass(frozen=True)
class RemoteProgress:
    """A snapshot of a remote run, as :class:`nion_autoem.runner.Progress` is of a local one."""

    run: str
    plan: str
    state: str
    step: int
    fraction: float
    eta_s: float | None
    current_action: str
    message: str
    dose_e: float
    elapsed_s: float
    rewards: typing.Mapping[str, float]
    beam_safe: bool | None
    run_id: str | None
    run_dir: str | None
    ahead: int
    submitted_by: str

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    def __str__(self) -> str:
        eta = "" if self.eta_s is None else f", ETA {self.eta_s:.0f} s"
        waiting = f" ({self.ahead} ahead)" if self.state == "queued" else ""
        return f"{self.state}{waiting}: step {self.step}, {100 * self.fraction:.0f}%{eta}, {self.current_action or '-'}; {self.message}"


@dataclasses.dataclass(frozen=True)
class RemoteProduct:
    """A product of a remote run: what the Swift data item shows, with its data."""

    key: str
    title: str
    caption: str
    data: CalibratedArray
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class LiveMeasurement:
    """The newest measurement of a run: a survey frame, a spectrum, a camera frame or an ADF trace, per channel."""

    step: int
    kind: str
    position_nm: tuple[float, float] | None
    dose_e: float
    channels: typing.Mapping[str, CalibratedArray]
    action: typing.Mapping[str, typing.Any]


RunLike = typing.Union["RemoteRun", str, None]


def _run_id(run: RunLike) -> str | None:
    return run.id if isinstance(run, RemoteRun) else run


class RemoteExperiments:
    """A connection to a nion-autoem server, with the console's calls; made by :func:`connect`."""

    def __init__(self, address: wire.Address, token: str, *, client_name: str, cafile: str | os.PathLike[str] | None, timeout_s: float) -> None:
        self.address = address
        self.client_name = client_name
        self.__token = token
        self.__cafile = cafile
        self.__timeout_s = timeout_s
        self.__lock = threading.Lock()
        self.__connection: _Connection | None = self.__connect()

    def __connect(self) -> _Connection:
        return _Connection(self.address, self.__token, self.client_name, cafile=self.__cafile, timeout_s=self.__timeout_s)

    def _call(self, method: str, *args: typing.Any, **kwargs: typing.Any) -> typing.Any:
        with self.__lock:
            if self.__connection is None:
                self.__connection = self.__connect()  # the last call lost the connection: this one starts afresh
            connection = self.__connection
        try:
            return connection.call(method, *args, **kwargs)
        except (OSError, errors.ProtocolError):
            with self.__lock:
                if self.__connection is connection:
                    self.__connection = None
            connection.close()
            raise

    # --- the console's calls ------------------------------------------------------------

    def list_plans(self) -> dict[str, typing.Any]:
        """The plans this server runs, each with its parameters (type, range, default, meaning), and the budget's."""
        return typing.cast(dict[str, typing.Any], self._call("list_plans"))

    def start_experiment(self, plan_name: str, *, budget: typing.Mapping[str, typing.Any] | None = None, **parameters: typing.Any) -> RemoteRun:
        """Queue an allow-listed plan with its parameters; it starts when nothing else runs.

        Parameters
        ----------
        plan_name : str
            One of :meth:`list_plans`, e.g. ``"dkl-spectroscopy"``.
        budget : mapping, optional
            ``max_steps``, ``max_dose_e``, ``max_time_s`` (default 500 steps).
        **parameters
            The plan's parameters; each is checked (type and range) before anything starts.

        Returns
        -------
        RemoteRun
            Follow it with ``progress()``/``wait()``; ``stop()`` makes the beam safe.
        """
        reply = self._call("submit", plan_name, {k: list(v) if isinstance(v, tuple) else v for k, v in parameters.items()},
                           None if budget is None else dict(budget))
        return RemoteRun(self, str(reply["run"]), str(reply["plan"]))

    def progress(self, run: RunLike = None) -> RemoteProgress:
        """Where a run is (by default the running one, else the latest)."""
        return RemoteProgress(**self._call("progress", _run_id(run)))

    def pause(self, run: RunLike = None, *, immediate: bool = False) -> RemoteProgress:
        """Pause at the plan's next checkpoint (or before its next action if ``immediate``); the beam is blanked while paused."""
        return RemoteProgress(**self._call("pause", _run_id(run), immediate))

    def resume(self, run: RunLike = None) -> RemoteProgress:
        """Continue a paused run."""
        return RemoteProgress(**self._call("resume", _run_id(run)))

    def stop(self, run: RunLike = None) -> dict[str, typing.Any]:
        """Stop a run, or with none the running one and everything queued; the beam is safe when this returns."""
        return typing.cast(dict[str, typing.Any], self._call("stop", _run_id(run)))

    def runs(self) -> list[dict[str, typing.Any]]:
        """Every run the server remembers, with its state."""
        return typing.cast(list[dict[str, typing.Any]], self._call("runs"))

    def products(self, run: RunLike = None) -> list[dict[str, typing.Any]]:
        """What a run has published so far: key, title, shape, dtype, caption."""
        return typing.cast(list[dict[str, typing.Any]], self._call("products", _run_id(run)))

    def product(self, key: str, run: RunLike = None) -> RemoteProduct:
        """One product with its data (e.g. ``"prediction"``, ``"signals"``, ``"survey"``)."""
        d = self._call("product", key, _run_id(run))
        return RemoteProduct(d["key"], d["title"], d["caption"], decode_calibrated(d["data"]), tuple((float(y), float(x)) for y, x in d["points"]),
                             tuple(d["labels"]))

    def journal(self, run: RunLike = None, since: int = 0) -> list[dict[str, typing.Any]]:
        """The run's journal from line ``since``: header, steps, results, events, end (data stays on the server)."""
        entries: list[dict[str, typing.Any]] = []
        while True:
            page = self._call("journal", _run_id(run), since + len(entries))
            entries.extend(page["entries"])
            if not page["entries"] or page["next"] >= page["total"]:
                return entries

    def live(self, run: RunLike = None, since_step: int = -1) -> LiveMeasurement | None:
        """The newest measurement after step ``since_step`` (None if there is none yet): poll with the last step you saw."""
        d = self._call("live", _run_id(run), since_step)
        if d is None:
            return None
        position = d.get("position_nm")
        return LiveMeasurement(int(d["step"]), str(d["kind"]), None if position is None else (float(position[0]), float(position[1])),
                               float(d.get("dose_e") or 0.0), {k: decode_calibrated(v) for k, v in d["channels"].items()}, d.get("action") or {})

    def close(self) -> None:
        """Hang up (runs on the server go on)."""
        with self.__lock:
            connection, self.__connection = self.__connection, None
        if connection is not None:
            connection.close()

    def __enter__(self) -> RemoteExperiments:
        return self

    def __exit__(self, *exc: typing.Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<nion-autoem remote {self.address} as {self.client_name}>"


class RemoteRun:
    """A submitted run: the same calls, about this run."""

    def __init__(self, experiments: RemoteExperiments, run_id: str, plan: str) -> None:
        self.experiments = experiments
        self.id = run_id
        self.plan = plan

    def progress(self) -> RemoteProgress:
        """Where the run is."""
        return self.experiments.progress(self)

    def wait(self, timeout_s: float | None = None, *, poll_s: float = 0.5, on_progress: typing.Callable[[RemoteProgress], None] | None = None) -> RemoteProgress:
        """Poll until the run ends; ``on_progress`` sees every new step or state.  ``TimeoutError`` after ``timeout_s`` (the run goes on)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        last: tuple[str, int] | None = None
        while True:
            progress = self.progress()
            if on_progress is not None and (progress.state, progress.step) != last:
                on_progress(progress)
                last = (progress.state, progress.step)
            if progress.is_final:
                return progress
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {self.id} still {progress.state} after {timeout_s} s (it goes on; stop() it if need be)")
            time.sleep(poll_s)

    def pause(self, *, immediate: bool = False) -> RemoteProgress:
        """Pause it (see :meth:`RemoteExperiments.pause`)."""
        return self.experiments.pause(self, immediate=immediate)

    def resume(self) -> RemoteProgress:
        """Continue it."""
        return self.experiments.resume(self)

    def stop(self) -> dict[str, typing.Any]:
        """Stop it; the beam is safe when this returns."""
        return self.experiments.stop(self)

    def products(self) -> list[dict[str, typing.Any]]:
        """What it has published so far."""
        return self.experiments.products(self)

    def product(self, key: str) -> RemoteProduct:
        """One of its products, with data."""
        return self.experiments.product(key, self)

    def journal(self, since: int = 0) -> list[dict[str, typing.Any]]:
        """Its journal lines."""
        return self.experiments.journal(self, since)

    def live(self, since_step: int = -1) -> LiveMeasurement | None:
        """Its newest measurement after ``since_step``."""
        return self.experiments.live(self, since_step)

    def __repr__(self) -> str:
        return f"<remote run {self.id} ({self.plan})>"


def connect(uri: str, token: str | os.PathLike[str], *, client_name: str | None = None, cafile: str | os.PathLike[str] | None = None,
            timeout_s: float = 30.0) -> RemoteExperiments:
    """Connect to a nion-autoem server and authenticate.

    Parameters
    ----------
    uri : str
        The address the server printed, e.g.
        ``"nion-autoem+tls://10.0.0.5:4711?sha256=<fingerprint>"``.
    token : str or path
        The server's token, or the path of a file that holds it.
    client_name : str, optional
        How the server's journal names you (default ``user@host``).
    cafile : path-like, optional
        CA bundle, for a server with its own certificate and an address without a fingerprint.
    timeout_s : float
        Longest wait for a reply.

    Returns
    -------
    RemoteExperiments
        With ``list_plans``, ``start_experiment``, ``progress``, ``pause``, ``resume``, ``stop``, ``products``, ``journal``, ``live``.

    Raises
    ------
    PermissionError
        The server refused the token (the message says why).
    ssl.SSLCertVerificationError
        The server's certificate is not the one the address pins.
    """
    address = wire.parse_address(uri)
    if isinstance(token, pathlib.Path):
        token = token.read_text(encoding="utf-8").strip()
    if not isinstance(token, str) or not token:
        raise TypeError(f"token must be the server's token (a string) or the path of its token file, got {type(token).__name__}")
    name = client_name or f"{getpass.getuser()}@{socket.gethostname()}"
    if not isinstance(name, str) or not 0 < len(name) <= security.MAX_CLIENT_NAME:
        raise ValueError(f"client_name must be 1 to {security.MAX_CLIENT_NAME} characters, got {name!r}")
    return RemoteExperiments(address, token, client_name=name, cafile=cafile, timeout_s=timeout_s)
