"""DKL on the microscope from a notebook anywhere: connect, run, watch, fetch.

Start a server first, on the microscope PC inside Swift::

    >>> from nion_autoem.remote import serve_in_swift
    >>> server = serve_in_swift(_window)
    >>> print(server.uri); print(server.token)

or headless on the simulated microscope with the plasmonic twin::

    python -m nion_autoem.remote.serve --twin plasmonic

Then, on any machine that can reach it (for a server on 127.0.0.1 elsewhere,
through ``ssh -L 47211:127.0.0.1:47211 microscope-pc``)::

    python examples/remote_dkl.py "nion-autoem+tls://127.0.0.1:47211?sha256=..." --token-file token.txt

Each block below is one notebook cell.  The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import typing

import numpy

from nion_autoem.remote import connect
from nion_autoem.remote.client import RemoteProgress


def main(argv: typing.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("uri", help="the address the server printed")
    token = parser.add_mutually_exclusive_group(required=True)
    token.add_argument("--token", help="the token the server showed")
    token.add_argument("--token-file", type=pathlib.Path, help="a file holding it (mode 600)")
    parser.add_argument("--measurements", type=int, default=30)
    parser.add_argument("--band", type=float, nargs=2, default=(1.2, 2.1), metavar=("LOW_EV", "HIGH_EV"))
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/remote_dkl"), help="where the fetched products go (.npy)")
    args = parser.parse_args(argv)

    # --- connect: the token never crosses the wire, the certificate is pinned by the address
    scope = connect(args.uri, args.token if args.token is not None else args.token_file, client_name="remote_dkl example")
    plans = scope.list_plans()["plans"]
    print("the server runs:", ", ".join(plans))
    print("dkl-spectroscopy takes:", ", ".join(f"{k} ({v['type']})" for k, v in plans["dkl-spectroscopy"]["parameters"].items()))

    # --- run: every parameter is checked on the server before anything moves
    run = scope.start_experiment("dkl-spectroscopy", band_eV=tuple(args.band), measurements=args.measurements, exposure_ms=20.0, patch_size=12,
                                 survey_pixels=192, field_nm=320.0, pixel_time_us=2.0, exclusion_radius=1.5, budget={"max_steps": args.measurements + 10})
    print(f"submitted {run}")

    # --- watch: progress as it goes (run.stop() at any time makes the beam safe)
    def show(progress: RemoteProgress) -> None:
        print(f"  {progress}", flush=True)

    final = run.wait(on_progress=show, poll_s=0.5)

    # --- fetch: products arrive as raw arrays with their calibrations
    args.out.mkdir(parents=True, exist_ok=True)
    fetched = {}
    for info in run.products():
        product = run.product(info["key"])
        numpy.save(args.out / f"{info['key']}.npy", product.data.data)
        fetched[info["key"]] = list(product.data.data.shape)
        print(f"  {info['key']}: {product.title}, {product.data.data.shape} {product.data.data.dtype}; {product.caption}")
    newest = run.live()
    journal = run.journal()
    scope.close()
    print(json.dumps({"run": run.id, "state": final.state, "steps": final.step, "dose_e": final.dose_e, "message": final.message, "products": fetched,
                      "newest_measurement": None if newest is None else {"step": newest.step, "kind": newest.kind}, "journal_lines": len(journal),
                      "out": str(args.out)}))
    return 0 if final.state == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
