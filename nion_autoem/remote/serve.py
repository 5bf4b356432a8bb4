"""The remote server without Swift's window: usim (or one of its digital twins), headless, from one command.

    python -m nion_autoem.remote.serve --twin plasmonic

prints one JSON line with the address, the token (shown this once; it is
also in the token file, mode 600) and where the remote journal is, then
serves until interrupted (Ctrl-C or SIGTERM), which stops a running plan
with the beam made safe.  The main thread plays Swift's UI thread; plans run
on the runner's worker thread, as inside Swift.  Products are kept for the
clients to fetch; journals go under ``--runs``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import sys
import threading
import typing

from nion_autoem.plan import Plan
from nion_autoem.products import ResultSink
from nion_autoem.remote.plan_queue import Launcher
from nion_autoem.remote.server import DEFAULT_PORT
from nion_autoem.remote.server import RemoteServer
from nion_autoem.runner import Budget
from nion_autoem.runner import ExperimentRunner

TWINS = ("plasmonic", "mos2", "mos2-doped", "polar-domains", "usim")


def headless_launcher(runs_root: str | os.PathLike[str], *, torch_threads: int | None = 1) -> Launcher:
    """A launcher that runs plans on the registered instrument (usim or a twin) with no document: products go to the server's tap only.

    Parameters
    ----------
    runs_root : path-like
        Each run's journal goes to ``<runs_root>/<run id>``.
    torch_threads : int or None
        Threads torch may use (the DKL model is small; on a small machine a
        second thread only fights the simulator); None leaves torch alone.
    """
    root = pathlib.Path(runs_root)

    def launch(plan: Plan, budget: Budget, sink: ResultSink) -> ExperimentRunner:
        from nion_autoem.swift.microscope import SwiftMicroscope

        if torch_threads is not None and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(torch_threads)
        runner = ExperimentRunner(SwiftMicroscope(), plan, run_dir=root / "pending", budget=budget, sink=sink)
        runner.run_dir = root / runner.run_id
        runner.start()
        return runner

    return launch


def main(argv: typing.Sequence[str] | None = None) -> int:
    """Serve until interrupted; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--twin", choices=TWINS, default="plasmonic", help="sample: a digital twin, or 'usim' for usim's own")
    parser.add_argument("--seed", type=int, default=0, help="seed of the twin's random stream")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (0: any free one)")
    parser.add_argument("--no-tls", action="store_true", help="no TLS (loopback only)")
    parser.add_argument("--certificate", type=pathlib.Path, help="your own TLS certificate (PEM), with --key")
    parser.add_argument("--key", type=pathlib.Path, help="its private key (PEM)")
    parser.add_argument("--state-dir", type=pathlib.Path, help="token, certificate and remote journal (default ~/.nion-autoem/remote)")
    parser.add_argument("--runs", type=pathlib.Path, default=pathlib.Path("runs/remote"), help="where run journals go")
    parser.add_argument("--renew-token", action="store_true", help="make a new token (clients with the old one are locked out)")
    args = parser.parse_args(argv)

    from nion_autoem.swift.session import UsimSession

    configuration = None
    if args.twin != "usim":
        from nion_autoem.swift.usim_twin import create_configuration
        configuration = create_configuration(args.twin, seed=args.seed)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with UsimSession(configuration) as session:
        server = RemoteServer(headless_launcher(args.runs), host=args.host, port=args.port, tls=not args.no_tls, certificate=args.certificate, key=args.key,
                              state_dir=args.state_dir, renew_token=args.renew_token)
        try:
            print(json.dumps({"uri": server.uri, "token": server.token, "token_file": str(server.token_file), "fingerprint": server.fingerprint,
                              "journal": str(server.audit.path), "runs": str(args.runs), "twin": args.twin, "pid": os.getpid()}), flush=True)
            while not stop.is_set():
                session.pump(0.05)  # the main thread is Swift's UI thread here
        finally:
            server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
