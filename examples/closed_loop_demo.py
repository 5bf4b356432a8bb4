"""A short closed loop on the simulated microscope, headless.

Survey the sample, pick features on the survey, take an EELS spectrum on each,
then look closer around the most intense one.  Results become data items in a
Swift project saved under ``<out>/project``; the journal goes to ``<out>/run``
and a PNG summary to ``<out>/summary.png``.

Run it with ``bash scripts/demo.sh`` (which installs everything first), or
``python examples/closed_loop_demo.py --out out/demo`` in a prepared
environment.  Open ``<out>/project/nion-autoem-demo.nsproj`` in Swift
(File > Open Project) to see the result.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import time
import typing

import numpy

from nion_autoem.geometry import ScanFrame
from nion_autoem.journal import read_journal
from nion_autoem.policies import PointSpectroscopy
from nion_autoem.runner import Budget
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import Progress
from nion_autoem.swift.data_items import DataItemSink
from nion_autoem.swift.session import UsimSession
from nion_autoem.swift.session import leaked_components


def save_summary(png: pathlib.Path, policy: PointSpectroscopy, survey: typing.Any, spectra: typing.Any, frame: ScanFrame) -> None:
    """Survey with numbered measurement points, and the spectra, side by side."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (left, right) = pyplot.subplots(1, 2, figsize=(11, 4.8))
    cy, cx = survey.dimensional_calibrations
    h, w = survey.data_shape
    left.imshow(survey.data, cmap="gray", extent=(cx.offset, cx.offset + w * cx.scale, cy.offset + h * cy.scale, cy.offset))
    for i, (y, x) in enumerate(policy.positions_nm):
        # image calibrations follow Swift (origin at -centre); positions are scan-field nm
        py, px = frame.nm_to_pixel((y, x))
        left.plot(cx.offset + (px + 0.5) * cx.scale, cy.offset + (py + 0.5) * cy.scale, "o", mfc="none", mec="tab:orange")
        left.annotate(str(i + 1), (cx.offset + (px + 0.5) * cx.scale, cy.offset + (py + 0.5) * cy.scale), color="tab:orange", xytext=(4, 4), textcoords="offset points")
    left.set_xlabel("x (nm)")
    left.set_ylabel("y (nm)")
    left.set_title("HAADF survey and measured points")
    energy = spectra.dimensional_calibrations[-1]
    axis = energy.offset + energy.scale * numpy.arange(spectra.data_shape[-1])
    for i, spectrum in enumerate(spectra.data):
        right.semilogy(axis, numpy.clip(spectrum, 1, None), lw=0.8, label=f"{i + 1}: {policy.scores[i]:.3g}")
    right.set_xlabel("energy loss (eV)")
    right.set_ylabel("counts")
    right.set_title("EELS at each point (band intensity)")
    right.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(png, dpi=110)
    pyplot.close(figure)


def main(argv: typing.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/demo"), help="output folder (replaced)")
    parser.add_argument("--points", type=int, default=8, help="spectra on survey features")
    parser.add_argument("--refine", type=int, default=4, help="extra spectra around the best feature")
    parser.add_argument("--exposure-ms", type=float, default=20.0)
    args = parser.parse_args(argv)

    out: pathlib.Path = args.out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    started = time.time()
    frame = ScanFrame((256, 256), fov_nm=100.0)
    policy = PointSpectroscopy(points=args.points, refine_points=args.refine, exposure_ms=args.exposure_ms, survey_frame=frame, pixel_time_us=2.0)

    def report(progress: Progress) -> None:
        print(f"  {progress}", flush=True)

    with UsimSession(project_dir=out / "project", project_name="nion-autoem-demo") as session:
        sink = DataItemSink(session.document_controller)
        runner = ExperimentRunner(session.microscope(), policy, run_dir=out / "run", sink=sink, budget=Budget(max_steps=100))
        print(f"run {runner.run_id} on {runner.microscope.name if runner.microscope else '-'}")
        session.run_until_done(runner, on_progress=report)
        survey_item = sink.data_item(runner.run_id, "survey")
        spectra_item = sink.data_item(runner.run_id, "spectra")
        if runner.state.value != "finished" or survey_item is None or spectra_item is None:
            print(f"demo failed: {runner.progress.message}", file=sys.stderr)
            return 1
        save_summary(out / "summary.png", policy, survey_item.xdata, spectra_item.xdata, frame)
        project_path = session.project_path
        titles = sorted(d.title for d in session.document_model.data_items)
    leaks = leaked_components()
    record = read_journal(out / "run")
    summary = {"run_id": runner.run_id, "state": runner.state.value, "steps": len(record.steps), "dose_e": runner.progress.dose_e,
               "project": str(project_path), "journal": str(out / "run" / "journal.jsonl"), "summary_png": str(out / "summary.png"),
               "data_items": titles, "leaked_components": leaks, "wall_s": round(time.time() - started, 2)}
    print(json.dumps(summary))
    return 0 if not leaks else 1


if __name__ == "__main__":
    sys.exit(main())
