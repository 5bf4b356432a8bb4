"""The README's main job, shortened: it must keep working."""

from __future__ import annotations

import json
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("plan", ["dkl", "point"])
def test_demo_runs_and_saves_project_journal_and_png(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], plan: str) -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import closed_loop_demo
    finally:
        sys.path.pop(0)
    assert closed_loop_demo.main(["--out", str(tmp_path / "demo"), "--plan", plan, "--measurements", "12"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["state"] == "finished" and summary["leaked_components"] == {}
    assert summary["measured"] >= 12
    assert pathlib.Path(summary["project"]).exists() and pathlib.Path(summary["summary_png"]).stat().st_size > 10_000
    assert len(summary["data_items"]) >= 2
