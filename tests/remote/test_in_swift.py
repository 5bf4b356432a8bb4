"""Inside Swift: the server runs plans through the console's start_experiment, so a remote run's results are data items in the window."""

from __future__ import annotations

import pathlib
import threading
import time
import typing

import pytest

from nion_autoem.remote import connect
from nion_autoem.remote import serve_in_swift
from nion_autoem.remote.client import RemoteProgress
from nion_autoem.swift.session import UsimSession
from tests.remote.conftest import assert_closed


def test_a_remote_run_in_swift_lands_as_data_items(usim: UsimSession, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NION_AUTOEM_RUNS", str(tmp_path / "runs"))
    server = serve_in_swift(usim.document_controller, port=0, state_dir=tmp_path / "state")
    try:
        outcome: dict[str, typing.Any] = {}

        def notebook() -> None:  # the remote side, on its own thread: this test's main thread is Swift's UI thread
            with connect(server.uri, server.token, client_name="swift-test") as scope:
                run = scope.start_experiment("point-spectroscopy", points=2, refine_points=0, exposure_ms=5.0, survey_pixels=64, field_nm=100.0)
                outcome["final"] = run.wait(60, poll_s=0.05)
                outcome["products"] = run.products()

        thread = threading.Thread(target=notebook)
        thread.start()
        while thread.is_alive():
            usim.pump(0.05)
        final: RemoteProgress = outcome["final"]
        assert final.state == "finished", final
        assert final.run_dir is not None and pathlib.Path(final.run_dir).parent == tmp_path / "runs"  # start_experiment's own place for journals
        wanted = {f"Survey with measured points ({final.run_id})", f"Measured spectra ({final.run_id})"}
        deadline = time.monotonic() + 10
        while not wanted <= {item.title for item in usim.document_model.data_items} and time.monotonic() < deadline:
            usim.pump(0.05)  # the sink applies one product per refresh
        titles = {item.title for item in usim.document_model.data_items}
        assert f"Survey with measured points ({final.run_id})" in titles and f"Measured spectra ({final.run_id})" in titles
        # the same products reach the remote client
        assert {p["key"] for p in outcome["products"]} == {"survey", "spectra"}
    finally:
        server.close()
    assert_closed(server)
