"""The remote journal: every connection, command and refusal, with who asked.

One JSON line per event in ``remote-journal.jsonl`` beside the token:
the time, the client's name (as its handshake proved it) and address, the
command, the outcome (``ok``, ``refused`` or ``error``) and a detail.
Control commands and refusals are synced to disk before the reply leaves;
queries (progress polling) are flushed but not synced, so polling stays fast.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import threading
import typing

Outcome = typing.Literal["ok", "refused", "error"]


class AuditJournal:
    """Append-only JSON-lines journal of remote activity, safe to write from any thread.

    Parameters
    ----------
    path : path-like
        The journal file; created (mode 600) if missing, appended to otherwise.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.__file = os.fdopen(descriptor, "a", encoding="utf-8")
        self.__lock = threading.Lock()

    def write(self, command: str, outcome: Outcome, *, client: str | None, peer: str | None, detail: str = "", durable: bool = True,
              **extra: typing.Any) -> None:
        """Journal one event; ``durable`` syncs it to disk before returning."""
        entry = {"time": datetime.datetime.now(datetime.UTC).isoformat(), "client": client, "peer": peer, "command": command, "outcome": outcome,
                 "detail": detail[:2000], **extra}
        line = json.dumps(entry, default=str, separators=(",", ":"))
        with self.__lock:
            if self.__file.closed:
                return
            self.__file.write(line + "\n")
            self.__file.flush()
            if durable:
                os.fsync(self.__file.fileno())

    def entries(self) -> list[dict[str, typing.Any]]:
        """Everything journaled so far (for tests and for a person reading it)."""
        with self.__lock:
            text = self.path.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def close(self) -> None:
        with self.__lock:
            if not self.__file.closed:
                self.__file.close()
