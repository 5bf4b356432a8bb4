"""No full garbage collection of Swift's whole heap while nion-autoem works in the background.

Python's collector now and then walks every object of the process (a
"generation 2" collection), holding every thread while it does.  Swift with
its document, Qt proxies and torch loaded holds millions of objects: in the
real window one such collection took 340-565 ms, and the UI froze for all of
it, whichever thread happened to trigger it (a DKL run, Swift's own thread
pool, the UI thread itself).  It was the longest stall left in several
experiments.

``gc.freeze()`` moves every object that exists now into a permanent
generation that collections skip, so while an experiment runs a full
collection walks only what was made since.  Objects are still freed as
usual when their last reference goes; only reference cycles among the frozen
objects wait.  When the last piece of background work has ended (and its
results are in the document), ``gc.unfreeze()`` hands them all back to the
collector.

Holds nest and may come from any thread::

    with quiet_collections():
        ...  # a dry run, a classification

    hold()      # a run starting ...
    release()   # ... and its results shown
"""

from __future__ import annotations

import contextlib
import gc
import threading
import typing

_lock = threading.Lock()
_holders = 0


def holders() -> int:
    """How many pieces of background work are holding full collections off now."""
    with _lock:
        return _holders


def hold() -> None:
    """Keep full collections of the objects that exist now off until the matching :func:`release`."""
    global _holders
    with _lock:
        _holders += 1
        if _holders == 1:
            gc.freeze()


def release() -> None:
    """End one :func:`hold`; the last one gives the frozen objects back to the collector.

    Raises
    ------
    RuntimeError
        For a release without a hold (a bug in the caller: the count must not go below zero).
    """
    global _holders
    with _lock:
        if _holders == 0:
            raise RuntimeError("release() without hold(): each piece of background work releases exactly once")
        _holders -= 1
        if _holders == 0:
            gc.unfreeze()


@contextlib.contextmanager
def quiet_collections() -> typing.Iterator[None]:
    """:func:`hold` for the duration of a ``with`` block."""
    hold()
    try:
        yield
    finally:
        release()
