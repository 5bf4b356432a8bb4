"""The remote server inside Swift: plans run through the console's ``start_experiment``, so results land as data items.

>>> from nion_autoem.remote import serve_in_swift      # doctest: +SKIP
>>> server = serve_in_swift(_window)                  # doctest: +SKIP
>>> print(server.uri); print(server.token)            # doctest: +SKIP
>>> server.close()                                    # doctest: +SKIP

Off until called.  Requests arrive on Pyro5's threads and only queue; the
queue's thread calls ``start_experiment`` (which touches the document only
through Swift's queue, as for the panel), and from then on only the runner's
worker thread drives the microscope.
"""

from __future__ import annotations

import os
import typing

from nion_autoem.plan import Plan
from nion_autoem.products import ResultSink
from nion_autoem.remote.plan_queue import Launcher
from nion_autoem.remote.server import DEFAULT_PORT
from nion_autoem.remote.server import RemoteServer
from nion_autoem.runner import Budget
from nion_autoem.runner import ExperimentRunner


def swift_launcher(window: typing.Any) -> Launcher:
    """A launcher that starts plans with :func:`nion_autoem.swift.console.start_experiment` in ``window``.

    The products become data items in Swift and, through the server's own
    sink, reach remote clients too.
    """
    from nion_autoem.swift import console

    def launch(plan: Plan, budget: Budget, sink: ResultSink) -> ExperimentRunner:
        return console.start_experiment(plan, window=window, budget=budget, sinks=[sink])

    return launch


def serve_in_swift(window: typing.Any, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT, tls: bool = True,
                   certificate: str | os.PathLike[str] | None = None, key: str | os.PathLike[str] | None = None,
                   state_dir: str | os.PathLike[str] | None = None, renew_token: bool = False,
                   busy: typing.Callable[[], str | None] | None = None) -> RemoteServer:
    """Switch the remote plan-queue server on for this window.

    Parameters
    ----------
    window : nion.swift.DocumentController.DocumentController
        Where results go (in Swift's console: ``_window``); typed loosely
        here because only the Swift glue imports Swift.
    host : str
        Address to listen on; loopback by default (a client on another
        machine then needs an SSH tunnel, or ``host="0.0.0.0"`` with TLS).
    port : int
        TCP port.
    tls : bool
        Encrypt (default); off only on loopback.
    certificate, key : path-like, optional
        Your own certificate and key; by default one is made on first use.
    state_dir : path-like, optional
        Token, certificate and remote journal (default ``~/.nion-autoem/remote``).
    renew_token : bool
        Lock out every client that has the old token.
    busy : callable, optional
        Returns why the microscope is busy, or None: pass the panel's check
        (``lambda: "the panel's run" if panel_runner_is_running() else None``)
        so that a remote run waits instead of starting next to the panel's.

    Returns
    -------
    RemoteServer
        ``uri`` (give it to clients), ``token`` (show it once), ``active_runner``, ``close()`` (stops what it started).
    """
    return RemoteServer(swift_launcher(window), host=host, port=port, tls=tls, certificate=certificate, key=key, state_dir=state_dir, renew_token=renew_token,
                        busy=busy)
