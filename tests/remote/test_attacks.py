"""The attack suite: everything a hostile or broken client might send is refused with a sentence, journaled, and the server carries on."""

from __future__ import annotations

import os
import socket
import threading
import time
import typing

import pytest
from Pyro5 import protocol

from nion_autoem.remote import connect
from nion_autoem.remote import security
from nion_autoem.remote.client import RemoteExperiments
from nion_autoem.remote.server import RemoteServer
from nion_autoem.swift.session import UsimSession
from tests.remote.raw import RawConnection

#: A plan that runs for a few seconds on usim: survey, then spectra.
SLOW_PLAN: dict[str, typing.Any] = {"points": 40, "refine_points": 0, "exposure_ms": 50.0, "survey_pixels": 128, "field_nm": 100.0, "pixel_time_us": 1.0}


def refusals(server: RemoteServer, after: int) -> list[dict[str, typing.Any]]:
    return [e for e in server.audit.entries()[after:] if e["outcome"] == "refused"]


def still_serves(server: RemoteServer) -> None:
    """A good client still gets answers: nothing crashed."""
    with connect(server.uri, server.token, client_name="checker") as client:
        assert "dkl-spectroscopy" in client.list_plans()["plans"]


def test_no_token_is_refused(server: RemoteServer) -> None:
    before = len(server.audit.entries())
    with RawConnection(server.uri) as raw:
        kind, reason = raw.connect("hello")  # what a stock Pyro5 proxy sends
    assert kind == protocol.MSG_CONNECTFAIL and "no token" in reason
    with pytest.raises(TypeError, match="token"):
        connect(server.uri, "")
    assert [e["detail"] for e in refusals(server, before)] == [reason]
    still_serves(server)


def test_a_wrong_token_is_refused(server: RemoteServer) -> None:
    before = len(server.audit.entries())
    with pytest.raises(PermissionError, match="wrong token"):
        connect(server.uri, server.token[:-1] + ("A" if server.token[-1] != "A" else "B"))
    with RawConnection(server.uri) as raw:  # a MAC that is not even hex
        kind, reason = raw.connect({**security.make_handshake(server.token, "eve"), "mac": "z" * 64})
    assert kind == protocol.MSG_CONNECTFAIL and "wrong token" in reason
    assert len(refusals(server, before)) == 2
    still_serves(server)


def test_a_replayed_or_stale_handshake_is_refused(server: RemoteServer) -> None:
    captured = security.make_handshake(server.token, "alice@lab")
    with RawConnection(server.uri) as raw:
        kind, _ = raw.connect(captured)
        assert kind == protocol.MSG_CONNECTOK
    before = len(server.audit.entries())
    with RawConnection(server.uri) as raw:
        kind, reason = raw.connect(captured)
    assert kind == protocol.MSG_CONNECTFAIL and "already used" in reason
    # an old handshake whose nonce the server may have forgotten: its time gives it away
    stale = security.make_handshake(server.token, "alice@lab")
    stale_time = stale["time"] - 2 * security.HANDSHAKE_WINDOW_S
    stale["time"], stale["mac"] = stale_time, security._mac(server.token, "alice@lab", stale["nonce"], stale_time)
    with RawConnection(server.uri) as raw:
        kind, reason = raw.connect(stale)
    assert kind == protocol.MSG_CONNECTFAIL and "off the server's clock" in reason
    assert len(refusals(server, before)) == 2
    still_serves(server)


@pytest.mark.parametrize("name", ["__getattr__", "__setattr__", "__init__", "__class__", "__dict__", "__reduce__", "_RemoteExperiments__queue",
                                  "_pyroId", "_pyroDaemon", "get_metadata", "registered", "info", "shutdown", "close", "queue", "", 42, None])
def test_unexposed_methods_and_attributes_are_refused(server: RemoteServer, name: typing.Any) -> None:
    before = len(server.audit.entries())
    with RawConnection(server.uri) as raw:
        assert raw.connect(security.make_handshake(server.token, "mallory"))[0] == protocol.MSG_CONNECTOK
        flags, error = raw.invoke(name, "queue")
        assert flags & protocol.FLAGS_EXCEPTION and isinstance(error, AttributeError)
        assert "is not something this server does" in str(error) and "submit" in str(error)
        # Pyro's own daemon object is not there either
        flags, error = raw.invoke("registered", object_id="Pyro.Daemon")
        assert isinstance(error, LookupError) and "offers only" in str(error)
        flags, reply = raw.invoke("runs")  # the connection is still good for allowed calls
        assert not flags & protocol.FLAGS_EXCEPTION and reply == []
    assert len(refusals(server, before)) == 2


def test_batched_and_one_way_calls_are_refused_and_the_connection_closed(server: RemoteServer) -> None:
    before = len(server.audit.entries())
    for flag in (protocol.FLAGS_BATCH, protocol.FLAGS_ONEWAY):
        with RawConnection(server.uri) as raw:
            raw.connect(security.make_handshake(server.token, "mallory"))
            flags, error = raw.invoke("runs", flags=flag)
            assert isinstance(error, PermissionError) and "not accepted" in str(error)
            assert raw.is_closed_by_server()
    assert len(refusals(server, before)) == 2
    still_serves(server)


@pytest.mark.parametrize(("plan_name", "parameters", "error", "words"), [
    ("rm -rf /", {}, LookupError, "not on this server's allow-list"),
    ("", {}, LookupError, "allow-list"),
    ("__import__", {}, LookupError, "allow-list"),
    (42, {}, TypeError, "plan_name must be a string"),
    ("dkl-spectroscopy", {"measurements": "10"}, TypeError, "measurements must be a whole number, got str"),
    ("dkl-spectroscopy", {"measurements": 10.5}, TypeError, "measurements must be a whole number"),
    ("dkl-spectroscopy", {"measurements": True}, TypeError, "measurements must be a whole number"),
    ("dkl-spectroscopy", {"measurements": 0}, ValueError, r"measurements must be in \[1, 5000\]"),
    ("dkl-spectroscopy", {"measurements": 2**40}, ValueError, "measurements must be in"),
    ("dkl-spectroscopy", {"measurements": 2**70}, ValueError, "extension type 49 is not accepted"),  # msgpack has no such integer
    ("dkl-spectroscopy", {"exposure_ms": float("nan")}, ValueError, "exposure_ms must be a finite number"),
    ("dkl-spectroscopy", {"exposure_ms": -5.0}, ValueError, "exposure_ms must be in"),
    ("dkl-spectroscopy", {"band_eV": [2.0, 1.0]}, ValueError, "low < high"),
    ("dkl-spectroscopy", {"band_eV": [1.0]}, TypeError, r"band_eV must be a \(low, high\) pair"),
    ("dkl-spectroscopy", {"acquisition": "random"}, ValueError, "acquisition must be one of"),
    ("dkl-spectroscopy", {"scalarizer": "os.system"}, TypeError, "has no parameter 'scalarizer'"),
    ("dkl-spectroscopy", [1, 2], TypeError, "parameters must be a map"),
    ("atom-finding", {"ensemble": "/etc/passwd"}, ValueError, "ensemble must be one of"),
    ("atom-finding", {"field_nm": 500.0}, ValueError, r"field_nm must be in \[0.5, 20\]"),
    ("beam-targeting", {"points_nm": [[0.0, 0.0]] * 101}, ValueError, "1 to 100 points"),
    ("beam-targeting", {"points_nm": [[0.0, 9.0]]}, ValueError, "must lie in the field"),
    ("point-spectroscopy", {"survey_pixels": 64}, ValueError, "give survey_pixels and field_nm together"),
])
def test_plans_off_the_list_and_bad_parameters_are_refused_before_anything_runs(server: RemoteServer, plan_name: typing.Any, parameters: typing.Any,
                                                                                  error: type[Exception], words: str) -> None:
    before = len(server.audit.entries())
    with connect(server.uri, server.token, client_name="typo") as client:
        with pytest.raises(error, match=words):
            client._call("submit", plan_name, parameters)
        assert client.runs() == []  # nothing was queued
    [refused] = refusals(server, before)
    # a call that cannot even be decoded is journaled as a refused message, the rest as refused submissions
    assert refused["client"] == "typo" and refused["command"] in ("submit", "(message)") and error.__name__ in refused["detail"]


def test_a_bad_budget_is_refused(server: RemoteServer) -> None:
    with connect(server.uri, server.token) as client:
        with pytest.raises(ValueError, match="max_steps must be in"):
            client.start_experiment("point-spectroscopy", budget={"max_steps": -1})
        with pytest.raises(TypeError, match="budget has no parameter 'max_beam_current'"):
            client.start_experiment("point-spectroscopy", budget={"max_beam_current": 1.0})


def test_oversized_messages_are_refused_unread(server: RemoteServer) -> None:
    before = len(server.audit.entries())
    with RawConnection(server.uri) as raw:  # a handshake of 8 KiB
        kind, reason = raw.connect({**security.make_handshake(server.token, "x"), "padding": "x" * 8192})
    assert kind == protocol.MSG_CONNECTFAIL and "larger than the 4096 bytes" in reason
    with connect(server.uri, server.token, client_name="bulky") as client:
        with pytest.raises(PermissionError, match="larger than the 65536 bytes allowed"):
            client.start_experiment("point-spectroscopy", note="x" * 200_000)
    # a header that announces 1 GiB: refused before a byte of it is read
    with RawConnection(server.uri) as raw:
        raw.connect(security.make_handshake(server.token, "liar"))
        header = bytearray(protocol.SendingMessage(protocol.MSG_INVOKE, 0, 1, 4, b"x").data[:40])
        header[12:16] = (1 << 30).to_bytes(4, "big")
        raw.send(bytes(header))
        flags, error = raw.receive_result()
        assert isinstance(error, PermissionError) and str(1 << 30) in str(error)
        assert raw.is_closed_by_server()
    with RawConnection(server.uri) as raw:  # a ping is answered, but a ping is no way around the limit either
        raw.connect(security.make_handshake(server.token, "pinger"))
        raw.send_message(protocol.MSG_PING, b"ping")
        pong, payload = raw.receive_raw()
        assert pong.type == protocol.MSG_PING and payload == b"pong"
        header = bytearray(protocol.SendingMessage(protocol.MSG_PING, 0, 2, 4, b"x").data[:40])
        header[12:16] = (1 << 30).to_bytes(4, "big")
        raw.send(bytes(header))
        assert isinstance(raw.receive_result()[1], PermissionError) and raw.is_closed_by_server()
    assert len(refusals(server, before)) == 4
    still_serves(server)


def test_malformed_messages_and_raw_garbage_are_refused(server: RemoteServer) -> None:
    before = len(server.audit.entries())
    garbage = os.urandom(4096)
    with RawConnection(server.uri) as raw:  # garbage instead of a handshake, inside TLS
        raw.send(garbage)
        assert raw.is_closed_by_server()
    with RawConnection(server.uri, tls=False) as raw:  # garbage instead of TLS
        raw.send(garbage)
        assert raw.is_closed_by_server()
    with RawConnection(server.uri) as raw:  # a marshal-serialized handshake (marshal is not safe on hostile data)
        raw.send_message(protocol.MSG_CONNECT, b"\x00" * 32, seq=0, serializer_id=3)
        kind, reason = raw.receive()
        assert kind == protocol.MSG_CONNECTFAIL and "msgpack only" in reason
    with RawConnection(server.uri) as raw:  # a compressed handshake (a zip bomb would be)
        raw.send_message(protocol.MSG_CONNECT, b"\x00" * 32, seq=0, flags=protocol.FLAGS_COMPRESSED)
        kind, reason = raw.receive()
        assert kind == protocol.MSG_CONNECTFAIL and "compressed" in reason
    with RawConnection(server.uri) as raw:  # after a good handshake: payloads that are not a call
        raw.connect(security.make_handshake(server.token, "fuzzer"))
        for payload in (b"\xc1\xc1\xc1", b"\x93\x01\x02\x03", b"\xd4\x31\x00", wire_call_with_bad_arguments()):
            raw.send_message(protocol.MSG_INVOKE, payload)
            flags, error = raw.receive_result()
            assert flags & protocol.FLAGS_EXCEPTION and isinstance(error, (ValueError, TypeError))
            assert "malformed" in str(error) or "arguments must be a list" in str(error)
        raw.send(b"PYRO" + os.urandom(60))  # a broken header: the stream cannot be trusted after it
        assert raw.is_closed_by_server()
    details = [e["detail"] for e in refusals(server, before)]
    assert len(details) == 9, details
    assert any("TLS handshake failed" in d for d in details) and any("not a nion-autoem client" in d for d in details)
    still_serves(server)


def wire_call_with_bad_arguments() -> bytes:
    from nion_autoem.remote.wire import OBJECT_ID
    from nion_autoem.remote.wire import SERIALIZER
    return bytes(SERIALIZER.dumps([OBJECT_ID, "progress", "not a list", {}]))


def test_a_client_that_says_nothing_is_dropped(server: RemoteServer) -> None:
    before = len(server.audit.entries())
    with RawConnection(server.uri) as raw:
        started = time.monotonic()
        assert raw.is_closed_by_server()
        assert time.monotonic() - started < 3.0
    assert any("sent no handshake within 0.5 s" in e["detail"] for e in refusals(server, before))
    still_serves(server)


def test_a_certificate_that_is_not_the_pinned_one_is_refused(server: RemoteServer) -> None:
    import ssl
    forged = server.uri.split("?sha256=")[0] + "?sha256=" + "0" * 64
    with pytest.raises(ssl.SSLCertVerificationError, match="not the pinned"):
        connect(forged, server.token)


def test_many_connections_at_once(server: RemoteServer) -> None:
    results: list[str] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        try:
            c = connect(server.uri, server.token, client_name=f"crowd-{i}")
        except PermissionError as e:
            outcome = f"refused: {e}"
        else:
            holders.append(c)
            outcome = "ok" if all(isinstance(c.runs(), list) for _ in range(10)) else "bad"
        with lock:
            results.append(outcome)

    holders: list[RemoteExperiments] = []
    threads = [threading.Thread(target=client, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results.count("ok") == 16 and len(results) == 24  # the server allows 16 at once here
    assert all("too many connections (16)" in r for r in results if r != "ok")
    for c in holders:
        c.close()
    deadline = time.monotonic() + 5.0
    while server.connections and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.connections == 0
    still_serves(server)


def test_a_client_that_vanishes_mid_plan_leaves_the_run_going_and_stoppable(server: RemoteServer, usim: UsimSession) -> None:
    owner = connect(server.uri, server.token, client_name="laptop")
    run = owner.start_experiment("point-spectroscopy", **SLOW_PLAN)
    deadline = time.monotonic() + 20
    while run.progress().step < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.progress().state == "running"
    # the laptop's Wi-Fi drops: a reset, no goodbye
    connection = owner._RemoteExperiments__connection  # type: ignore[attr-defined]
    sock: socket.socket = connection._Connection__sock
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()
    time.sleep(0.3)
    with connect(server.uri, server.token, client_name="desktop") as other:
        progress = other.progress(run.id)
        assert progress.state == "running" and progress.submitted_by.startswith("laptop")
        step = progress.step
        while other.progress(run.id).step == step and time.monotonic() < deadline:
            time.sleep(0.05)
        assert other.progress(run.id).step > step  # it went on without its client
        stopped = other.stop()
        assert stopped["stopped"] == [run.id] and stopped["beam_safe"] is True
        assert usim.microscope().is_blanked  # safe when stop returned, before the run has wound down
        final = other.progress(run.id)
        while not final.is_final and time.monotonic() < deadline:
            final = other.progress(run.id)
    assert final.state == "stopped" and final.message.startswith("stopped by remote client desktop"), final
    assert any(e["command"] == "disconnect" and e["client"] == "laptop" for e in server.audit.entries())
    owner.close()


def test_without_tls_only_loopback_is_allowed(make_server: typing.Callable[..., RemoteServer]) -> None:
    with pytest.raises(ValueError, match="loopback only"):
        make_server(tls=False, host="0.0.0.0")
