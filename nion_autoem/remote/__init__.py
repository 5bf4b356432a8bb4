"""Remote steering: a secure plan queue on the microscope PC, driven from a notebook anywhere.

- :func:`connect` (client side: Pyro5's wire format, msgpack, numpy; no Swift) returns an object with the console's calls;
- :func:`serve_in_swift` switches the server on inside Swift (off by default);
- ``python -m nion_autoem.remote.serve --twin plasmonic`` runs the same server headless on usim.

See ``docs/remote.md`` for what is exposed and the security model.
"""

from __future__ import annotations

import typing

from nion_autoem.remote.client import RemoteExperiments
from nion_autoem.remote.client import RemoteRun
from nion_autoem.remote.client import connect

if typing.TYPE_CHECKING:
    from nion_autoem.remote.server import RemoteServer

__all__ = ["RemoteExperiments", "RemoteRun", "RemoteServer", "connect", "serve_in_swift"]


def __getattr__(name: str) -> typing.Any:
    # the server side imports the runner and the plans; a notebook that only connects needs none of it
    if name == "serve_in_swift":
        from nion_autoem.remote.in_swift import serve_in_swift
        return serve_in_swift
    if name == "RemoteServer":
        from nion_autoem.remote.server import RemoteServer
        return RemoteServer
    raise AttributeError(f"module 'nion_autoem.remote' has no attribute {name!r}")
