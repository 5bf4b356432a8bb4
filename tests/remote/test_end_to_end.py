"""The issue's "done when": a DKL experiment on the plasmonic twin, run to completion from another process, with live progress."""

from __future__ import annotations

import json
import os
import pathlib
import select
import signal
import subprocess
import sys
import typing

import numpy

from nion_autoem.remote import connect
from nion_autoem.remote.client import RemoteProgress

ROOT = pathlib.Path(__file__).resolve().parents[2]


def start_headless_server(tmp_path: pathlib.Path) -> tuple[subprocess.Popen[str], dict[str, typing.Any]]:
    """``python -m nion_autoem.remote.serve --twin plasmonic`` on a free port; returns the process and what it printed."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "nion_autoem.remote.serve", "--twin", "plasmonic", "--port", "0", "--state-dir", str(tmp_path / "state"),
                                "--runs", str(tmp_path / "runs")], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 60)
    line = process.stdout.readline() if ready else ""
    if not line:
        process.kill()
        raise AssertionError(f"the server did not start: {process.communicate(timeout=10)[1][-2000:]}")
    return process, json.loads(line)


def test_a_dkl_experiment_on_the_twin_runs_from_another_process_with_live_progress(tmp_path: pathlib.Path) -> None:
    process, started = start_headless_server(tmp_path)
    try:
        assert started["uri"].startswith("nion-autoem+tls://127.0.0.1:") and "?sha256=" in started["uri"]
        token_file = pathlib.Path(started["token_file"])
        assert token_file.stat().st_mode & 0o777 == 0o600 and token_file.read_text().strip() == started["token"]
        seen: list[RemoteProgress] = []
        with connect(started["uri"], token_file, client_name="notebook") as scope:
            run = scope.start_experiment("dkl-spectroscopy", band_eV=(1.2, 2.1), measurements=6, n_initial=3, exposure_ms=5.0, patch_size=12, stride=6,
                                         survey_pixels=96, field_nm=320.0, pixel_time_us=1.0, full_iterations=15, warm_iterations=5, refit_every=2)
            final = run.wait(60, poll_s=0.1, on_progress=seen.append)
            assert final.state == "finished", final
            assert final.step == 7 and final.fraction == 1.0 and final.dose_e > 0 and final.beam_safe is True
            steps = [p.step for p in seen]
            assert steps == sorted(steps) and len(set(steps)) >= 4, steps  # progress arrived as the run went, not only at the end
            products = {p["key"]: p for p in run.products()}
            assert {"survey", "prediction", "uncertainty", "signals", "convergence"} <= set(products)
            prediction = run.product("prediction")
            assert prediction.data.data.ndim == 2 and numpy.all(numpy.isfinite(prediction.data.data))
            assert prediction.data.dimensional_calibrations[0].units == "nm"
            signals = run.product("signals").data
            assert signals.data.shape[0] == 6 and signals.dimensional_calibrations[-1].units == "eV"
            survey = run.product("survey")
            assert survey.data.data.shape == (96, 96) and len(survey.points) == 6
            last = run.live()
            assert last is not None and last.step == 6 and last.kind == "spectrum"
            assert next(iter(last.channels.values())).data.shape == signals.data.shape[1:]
            journal = run.journal()
            assert journal[0]["type"] == "header" and journal[0]["plan"] == "dkl-spectroscopy" and journal[-1]["type"] == "end"
            assert sum(e["type"] == "step" for e in journal) == 7
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        audit = [json.loads(line) for line in pathlib.Path(started["journal"]).read_text().splitlines()]
        assert any(e["command"] == "submit" and e["client"] == "notebook" and e["outcome"] == "ok" for e in audit)
        assert audit[-1]["command"] == "close"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
