"""A closed loop on the simulated microscope, headless: DKL finds plasmonic corner modes.

The digital-twin plasmonic sample (silver rods, a triangle, a cube and a rod
dimer on a membrane) is loaded into nionswift-usim.  The experiment surveys it,
cuts a patch around every candidate position, and lets deep kernel learning
decide where to record the next EELS spectrum so that it finds where the
low-energy (corner and gap) plasmon modes are strongest.  Every spectrum is
scalarized (integrated 1.2–2.1 eV), journaled and fed back; the maps, the
spectra and the exploration path are Swift data items, updated as the run goes.

Outputs under ``--out`` (default ``out/demo``):

- ``project/nion-autoem-demo.nsproj``: the Swift project (File ▸ Open Project);
- ``run/journal.jsonl`` and ``run/data/``: the journal, one line and one
  ``.npy`` file per action;
- ``summary.png``: survey with the path, the prediction map, and the spectra.

The last line printed is a JSON summary, including a check against the twin's
ground truth: how many measurements landed where a corner or gap mode is
strong, compared with the share of such positions among all candidates.

``--plan point`` runs the simpler point-spectroscopy loop instead.
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
import numpy.typing

from nion_autoem.geometry import ScanFrame
from nion_autoem.journal import read_journal
from nion_autoem.plan import Plan
from nion_autoem.plans import PointSpectroscopy
from nion_autoem.runner import Budget
from nion_autoem.runner import ExperimentRunner
from nion_autoem.runner import Progress
from nion_autoem.swift.data_items import DataItemSink
from nion_autoem.swift.session import UsimSession
from nion_autoem.swift.session import leaked_components

LOW_MODE_BAND_EV = (1.2, 2.1)


def low_mode_excitation(twin: typing.Any, positions_nm: numpy.typing.NDArray[typing.Any]) -> numpy.typing.NDArray[typing.Any]:
    """Ground truth: how strongly (0-1) the probe at each position excites a corner or gap mode."""
    peak = {mode.name: mode.strength for mode in twin.modes}
    return numpy.asarray([max((s / peak[name] for name, _, s in twin.modes_at(p) if "corner" in name or name.startswith("gap")), default=0.0)
                          for p in positions_nm])


def save_summary(png: pathlib.Path, products: dict[str, typing.Any], frame: ScanFrame, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    panels = [key for key in ("survey", "prediction", "signals", "spectra") if key in products]
    figure, axes = pyplot.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.8))
    for axis, key in zip(numpy.atleast_1d(axes), panels, strict=True):
        xdata = products[key].xdata
        if key == "survey":
            h, w = frame.size_nm
            axis.imshow(xdata.data, cmap="gray", extent=(-w / 2, w / 2, h / 2, -h / 2))
            for label, (fy, fx) in zip(products[key].labels, products[key].points, strict=True):
                y, x = (fy - 0.5) * h, (fx - 0.5) * w
                axis.plot(x, y, ".", color="tab:orange", ms=4)
                if int(label) <= 15:
                    axis.annotate(label, (x, y), color="tab:orange", fontsize=7, xytext=(2, 2), textcoords="offset points")
            axis.set_title("survey and measurement order")
            axis.set_xlabel("x (nm, from the scan centre)")
        elif key == "prediction":
            cy, cx = xdata.dimensional_calibrations
            rows, cols = xdata.data_shape
            image = axis.imshow(xdata.data, cmap="magma", extent=(cx.offset, cx.offset + cols * cx.scale, cy.offset + rows * cy.scale, cy.offset))
            figure.colorbar(image, ax=axis, shrink=0.8)
            axis.set_title(f"DKL prediction, {LOW_MODE_BAND_EV[0]}-{LOW_MODE_BAND_EV[1]} eV intensity")
            axis.set_xlabel("x (nm)")
        else:
            energy = xdata.dimensional_calibrations[-1]
            energies = energy.offset + energy.scale * numpy.arange(xdata.data_shape[-1])
            keep = (energies > 0.5) & (energies < 4.5)
            values = products[key].xdata.metadata.get("nion_autoem", {}).get("values") or products[key].xdata.metadata.get("nion_autoem", {}).get("band_intensity")
            order = numpy.argsort(values)[::-1][:5] if values else range(min(5, xdata.data_shape[0]))
            for i in order:
                axis.plot(energies[keep], xdata.data[i][keep], lw=0.9, label=f"#{i + 1}")
            axis.axvspan(*LOW_MODE_BAND_EV, color="tab:orange", alpha=0.15)
            axis.set_title("low-loss EELS, five best measurements")
            axis.set_xlabel("energy loss (eV)")
            axis.legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    pyplot.close(figure)


def main(argv: typing.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/demo"), help="output folder (replaced)")
    parser.add_argument("--plan", choices=("dkl", "point"), default="dkl")
    parser.add_argument("--measurements", type=int, default=60, help="spectra to record")
    parser.add_argument("--exposure-ms", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch
    torch.set_num_threads(1)  # the GP is small; a second thread only fights the simulator for the 2 cores

    out: pathlib.Path = args.out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    started = time.time()
    frame = ScanFrame((192, 192), fov_nm=320.0)
    plan: Plan
    if args.plan == "dkl":
        from nion_autoem.plans.dkl_spectroscopy import DKLSettings
        from nion_autoem.plans.dkl_spectroscopy import DKLSpectroscopy
        from nion_autoem.plans.dkl_spectroscopy import band_integral
        from nion_autoem_dkl.agent import AgentConfig
        plan = DKLSpectroscopy(band_integral(LOW_MODE_BAND_EV),
                                 DKLSettings(patch_size=12, stride=3, max_measurements=args.measurements, exposure_ms=args.exposure_ms, survey_frame=frame, pixel_time_us=2.0),
                                 AgentConfig(acquisition="thompson", n_initial=10, exclusion_radius=1.5, seed=args.seed))
    else:
        plan = PointSpectroscopy(points=args.measurements, refine_points=4, exposure_ms=args.exposure_ms, band_eV=LOW_MODE_BAND_EV, survey_frame=frame, pixel_time_us=2.0)

    from nion_autoem.swift.usim_twin import create_configuration

    def report(progress: Progress) -> None:
        if progress.step % 10 == 0 or progress.state.is_final:
            print(f"  {progress}", flush=True)

    configuration = create_configuration("plasmonic", seed=args.seed)
    with UsimSession(configuration, project_dir=out / "project", project_name="nion-autoem-demo") as session:
        sink = DataItemSink(session.document_controller)
        from nion_autoem.products import MemorySink

        class Both:
            """Swift data items, plus an in-memory copy for the PNG."""
            memory = MemorySink()

            def publish(self, product: typing.Any, run_metadata: typing.Mapping[str, typing.Any]) -> None:
                sink.publish(product, run_metadata)
                self.memory.publish(product, run_metadata)

        both = Both()
        runner = ExperimentRunner(session.microscope(), plan, run_dir=out / "run", sink=both, budget=Budget(max_steps=args.measurements + 20))
        print(f"run {runner.run_id}: {plan.name} on the plasmonic twin")
        session.run_until_done(runner, on_progress=report)
        if runner.state.value != "finished":
            print(f"demo failed: {runner.progress.message}", file=sys.stderr)
            return 1
        products = both.memory.products
        record = read_journal(out / "run")
        measured = numpy.array([s.entry["position_nm"] for s in record.steps if s.entry["position_nm"] is not None])
        twin = configuration.twin
        hit = low_mode_excitation(twin, measured) > 0.5
        candidates = frame.pixel_grid_nm()[::6, ::6].reshape(-1, 2)
        baseline = float(numpy.mean(low_mode_excitation(twin, candidates) > 0.5))
        save_summary(out / "summary.png", products, frame, f"{plan.name}: {int(hit.sum())}/{len(hit)} spectra on corner/gap modes")
        project_path = session.project_path
        titles = sorted(d.title for d in session.document_model.data_items if "nion_autoem" in d.metadata)
    leaks = leaked_components()
    summary = {"run_id": runner.run_id, "plan": plan.name, "state": runner.state.value, "steps": len(record.steps), "dose_e": runner.progress.dose_e,
               "on_low_modes": int(hit.sum()), "measured": int(len(hit)), "on_low_modes_frac": round(float(hit.mean()), 3), "low_mode_area_frac": round(baseline, 3),
               "project": str(project_path), "journal": str(out / "run" / "journal.jsonl"), "summary_png": str(out / "summary.png"),
               "data_items": titles, "leaked_components": leaks, "wall_s": round(time.time() - started, 2)}
    print(json.dumps(summary))
    return 0 if not leaks else 1


if __name__ == "__main__":
    sys.exit(main())
