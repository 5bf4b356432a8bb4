"""The queue from a client's side: one run at a time, pause and resume with the beam blanked, stop cancels what waits; stock Pyro5 clients."""

from __future__ import annotations

import time
import typing

import pytest
from Pyro5 import errors as pyro_errors
from Pyro5.client import Proxy

from nion_autoem.remote import connect
from nion_autoem.remote import security
from nion_autoem.remote.server import RemoteServer
from nion_autoem.swift.session import UsimSession
from tests.remote.test_attacks import SLOW_PLAN


def wait_for(predicate: typing.Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_runs_queue_pause_resume_and_a_stop_cancels_the_queue(server: RemoteServer, usim: UsimSession) -> None:
    with connect(server.uri, server.token, client_name="queue-test") as client:
        first = client.start_experiment("point-spectroscopy", **SLOW_PLAN)
        second = client.start_experiment("point-spectroscopy", points=2, refine_points=0)
        assert second.progress().state == "queued" and second.progress().ahead == 1
        with pytest.raises(RuntimeError, match="queued, not running"):
            second.pause()
        wait_for(lambda: first.progress().step >= 2)
        assert server.active_runner is not None and server.active_runner.run_id == first.progress().run_id
        first.pause(immediate=True)
        wait_for(lambda: first.progress().state == "paused")
        assert usim.microscope().is_blanked  # paused means blanked
        step = first.progress().step
        time.sleep(0.3)
        assert first.progress().step == step
        first.resume()
        wait_for(lambda: first.progress().step > step)
        result = client.stop()
        assert result["stopped"] == [first.id] and result["cancelled"] == [second.id] and result["beam_safe"] is True
        assert usim.microscope().is_blanked
        wait_for(lambda: first.progress().is_final)
        assert first.progress().state == "stopped" and second.progress().state == "cancelled"
        assert {r["run"]: r["state"] for r in client.runs()} == {first.id: "stopped", second.id: "cancelled"}
        assert client.stop()["message"] == "nothing was running or queued"
    journaled = [e for e in server.audit.entries() if e["client"] == "queue-test" and e["command"] in ("submit", "pause", "resume", "stop")]
    assert [e["command"] for e in journaled] == ["submit", "submit", "pause", "pause", "resume", "stop", "stop"]
    assert [e["outcome"] for e in journaled] == ["ok", "ok", "refused", "ok", "ok", "ok", "ok"]


def test_a_stock_pyro5_proxy_gets_in_only_with_the_token_and_only_to_the_allowed_calls(make_server: typing.Callable[..., RemoteServer]) -> None:
    server = make_server(tls=False)  # Pyro5's own proxy does TLS only through global settings; loopback without TLS here
    port = server.uri.rsplit(":", 1)[1]
    with Proxy(f"PYRO:nion_autoem.experiments@127.0.0.1:{port}") as proxy:
        proxy._pyroSerializer = "msgpack"
        with pytest.raises(pyro_errors.CommunicationError, match="no token"):
            proxy._pyroBind()
    with Proxy(f"PYRO:nion_autoem.experiments@127.0.0.1:{port}") as proxy:
        proxy._pyroSerializer = "msgpack"
        proxy._pyroHandshake = security.make_handshake(server.token, "stock-pyro")
        assert proxy.runs() == []
        with pytest.raises(AttributeError):
            proxy.shutdown()  # not even sent: the proxy knows the allowed names from the handshake
        with pytest.raises(AttributeError, match="is not something this server does"):
            proxy._pyroInvoke("__getattr__", ("_RemoteExperiments__queue",), None)
    with Proxy(f"PYRO:nion_autoem.experiments@127.0.0.1:{port}") as proxy:  # serpent, Pyro's default
        proxy._pyroHandshake = security.make_handshake(server.token, "stock-pyro")
        with pytest.raises(pyro_errors.CommunicationError, match="msgpack only"):
            proxy._pyroBind()


def test_a_remote_run_waits_while_the_microscope_is_busy_with_the_panels_run(make_server: typing.Callable[..., RemoteServer]) -> None:
    panel_running = [True]
    server = make_server(busy=lambda: "the panel's experiment is running" if panel_running[0] else None)
    with connect(server.uri, server.token) as client:
        run = client.start_experiment("point-spectroscopy", points=1, refine_points=0, exposure_ms=5.0, survey_pixels=32, field_nm=100.0)
        time.sleep(0.3)
        waiting = run.progress()
        assert waiting.state == "queued" and waiting.message == "waiting: the panel's experiment is running"
        panel_running[0] = False
        assert run.wait(20, poll_s=0.05).state == "finished"
