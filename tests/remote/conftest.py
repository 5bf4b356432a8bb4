"""A real server on 127.0.0.1 (a free port) over usim, checked on the way out for threads and ports left behind."""

from __future__ import annotations

import pathlib
import socket
import threading
import time
import typing

import pytest

from nion_autoem.remote.serve import headless_launcher
from nion_autoem.remote.server import RemoteServer
from nion_autoem.remote.wire import parse_address
from nion_autoem.swift.session import UsimSession
from nion_autoem.swift.session import leaked_components


@pytest.fixture(scope="module")
def usim() -> typing.Iterator[UsimSession]:
    """Stock usim, shared by a module's tests (each test gets a server of its own)."""
    session = UsimSession()
    try:
        yield session
    finally:
        session.close()
    assert leaked_components() == {}, f"components left registered: {leaked_components()}"


def _our_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("Pyro-Worker", "nion-autoem remote", "housekeeper"))]


def assert_closed(server: RemoteServer) -> None:
    """No worker thread and no listening port left behind."""
    deadline = time.monotonic() + 5.0
    while _our_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _our_threads() == [], f"threads left behind: {_our_threads()}"
    address = parse_address(server.uri)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((address.host, address.port), timeout=1.0).close()


@pytest.fixture
def make_server(usim: UsimSession, tmp_path: pathlib.Path) -> typing.Iterator[typing.Callable[..., RemoteServer]]:
    """Start servers on free ports (TLS on unless told otherwise); all are closed and checked after the test."""
    servers: list[RemoteServer] = []

    def make(**kwargs: typing.Any) -> RemoteServer:
        options: dict[str, typing.Any] = {"port": 0, "state_dir": tmp_path / "state", "handshake_timeout_s": 0.5, "max_sessions": 16, **kwargs}
        server = RemoteServer(headless_launcher(tmp_path / "runs"), **options)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()
    for server in servers:
        assert_closed(server)


@pytest.fixture
def server(make_server: typing.Callable[..., RemoteServer]) -> RemoteServer:
    """One TLS server with the default limits (16 connections, 0.5 s to authenticate)."""
    return make_server()
