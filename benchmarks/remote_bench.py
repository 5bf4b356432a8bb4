"""Remote steering on loopback: how fast frames and commands travel, how fast a remote stop makes the beam safe, how many attacks are refused.

Client and server run on this machine over 127.0.0.1, with TLS on (the
server's default) and a token handshake, exactly as a notebook would connect:

- ``frame_512_roundtrip_ms``: fetch a 512 x 512 float32 survey frame (a run's
  product) through the client: request, raw bytes with dtype and shape, decode
  (target <= 10 ms);
- ``dtmicroscope_style_list_ms``: the same frame from a plain Pyro5 object
  that returns ``frame.tolist()`` with Pyro's default serializer, as the public
  DTMicroscope server does (no TLS, no token), for comparison;
- ``command_roundtrip_ms``: a small command (``progress``), median (target <= 2 ms);
- ``remote_stop_to_safe_ms``: from the client's ``stop()`` call to the beam
  blanked, during an EELS exposure of a real run on usim; the server makes the
  beam safe before it replies, and the blanker is read after the reply to
  confirm; median of several stops (target <= 100 ms);
- ``attacks_refused_frac``: the attack suite (``tests/remote/test_attacks.py``,
  run in a subprocess), passed / total: every test asserts a refusal (target 1.0).

Run::

    python benchmarks/remote_bench.py

About a minute.  Timings on a busy machine are not worth much: the load
average is printed with them.  The last line is a JSON summary.
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import typing
import xml.etree.ElementTree

import numpy
import numpy.typing

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

FRAME_FETCHES = 30
LIST_FETCHES = 5
COMMANDS = 300
STOP_TRIALS = 8


def attack_suite() -> tuple[int, int]:
    """(passed, total) of the attack suite, each test a refusal that must hold."""
    with tempfile.TemporaryDirectory() as tmp:
        report = pathlib.Path(tmp) / "attacks.xml"
        subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "tests" / "remote" / "test_attacks.py"), "-q", "-p", "no:cacheprovider", f"--junitxml={report}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
        suite = xml.etree.ElementTree.parse(report).getroot().find("testsuite")
        assert suite is not None
        total = int(suite.get("tests", 0))
        failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0)) + int(suite.get("skipped", 0))
        return total - failed, total


def dtmicroscope_style_ms(frame: numpy.typing.NDArray[typing.Any]) -> float:
    """A 512 x 512 frame as a Python list through a stock Pyro5 daemon and proxy (serpent), as DTMicroscope sends it."""
    import threading

    from Pyro5.client import Proxy
    from Pyro5.server import Daemon
    from Pyro5.server import expose

    @expose
    class Microscope:
        def get_frame(self) -> list[typing.Any]:
            return typing.cast(list[typing.Any], frame.tolist())

    daemon = Daemon(host="127.0.0.1", port=0)
    uri = daemon.register(Microscope(), "microscope")
    thread = threading.Thread(target=daemon.requestLoop, daemon=True)
    thread.start()
    try:
        times = []
        with Proxy(uri) as proxy:
            for _ in range(LIST_FETCHES):
                started = time.perf_counter()
                received = numpy.asarray(proxy.get_frame(), dtype=numpy.float32)
                times.append(time.perf_counter() - started)
        assert numpy.array_equal(received, frame)
        return 1000 * statistics.median(times)
    finally:
        daemon.shutdown()
        thread.join(5)


def main() -> int:
    passed, total = attack_suite()  # first: it starts usim sessions of its own

    from nion_autoem.remote import connect
    from nion_autoem.remote.serve import headless_launcher
    from nion_autoem.remote.server import RemoteServer
    from nion_autoem.swift.session import UsimSession

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp, UsimSession() as session:
        scope = session.microscope()
        server = RemoteServer(headless_launcher(pathlib.Path(tmp) / "runs"), port=0, state_dir=pathlib.Path(tmp) / "state")
        try:
            client = connect(server.uri, server.token, client_name="bench")
            run = client.start_experiment("point-spectroscopy", points=1, refine_points=0, exposure_ms=5.0, survey_pixels=512, field_nm=100.0, pixel_time_us=0.5)
            assert run.wait(60, poll_s=0.05).state == "finished"
            frame_times = []
            for _ in range(FRAME_FETCHES):
                started = time.perf_counter()
                survey = run.product("survey").data.data
                frame_times.append(time.perf_counter() - started)
            assert survey.shape == (512, 512) and survey.dtype == numpy.float32
            command_times = []
            for _ in range(COMMANDS):
                started = time.perf_counter()
                run.progress()
                command_times.append(time.perf_counter() - started)
            stop_times = []
            for _ in range(STOP_TRIALS):
                slow = client.start_experiment("point-spectroscopy", points=20, refine_points=0, exposure_ms=300.0, survey_pixels=64, field_nm=100.0, pixel_time_us=0.5)
                deadline = time.monotonic() + 30
                # stop in the middle of an exposure, with the beam on
                while not ("acquire" in slow.progress().current_action and not scope.is_blanked) and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(0.05)
                started = time.perf_counter()
                reply = slow.stop()
                stopped = time.perf_counter()
                assert scope.is_blanked and reply["beam_safe"] is True, reply
                stop_times.append(stopped - started)
                slow.wait(10, poll_s=0.05)
            client.close()
        finally:
            server.close()
    list_ms = dtmicroscope_style_ms(numpy.asarray(survey))
    summary = {"frame_512_roundtrip_ms": round(1000 * statistics.median(frame_times), 2), "dtmicroscope_style_list_ms": round(list_ms, 1),
               "command_roundtrip_ms": round(1000 * statistics.median(command_times), 3), "remote_stop_to_safe_ms": round(1000 * statistics.median(stop_times), 2),
               "remote_stop_to_safe_max_ms": round(1000 * max(stop_times), 2), "attacks_refused_frac": round(passed / total, 3) if total else 0.0,
               "attacks": total, "tls": True, "loopback": True, "stop_trials": STOP_TRIALS, "load_average_1min": round(load, 2)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
