"""The run catalog: every run's journal, frames, products and models in one SQLite database.

A run is registered from its directory (its journal says the plan, the times,
the outcome, and which model version made each step's decision), by sample, so
"all frames of MoS2 from this week" is one query whose rows (frame file, run
id, step) are a training set. Registering a run again (it was resumed) replaces
its rows. SQLite is the standard library's and a single file, which a lab can
keep on a shared drive; the queries are plain SQL, should it move to a server.

Lives in ``nion_autoem`` because it reads journals with :func:`nion_autoem.journal.read_journal`.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib
import sqlite3
import threading
import typing

from nion_autoem.journal import JOURNAL_NAME
from nion_autoem.journal import read_journal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, run_dir TEXT NOT NULL, sample TEXT NOT NULL COLLATE NOCASE, plan TEXT NOT NULL,
    microscope TEXT NOT NULL, started TEXT NOT NULL, ended TEXT, outcome TEXT NOT NULL, steps INTEGER NOT NULL,
    dose_e REAL NOT NULL, model_versions TEXT NOT NULL, registered TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS frames (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE, step INTEGER NOT NULL, channel TEXT NOT NULL,
    path TEXT NOT NULL, kind TEXT NOT NULL, shape TEXT NOT NULL, model_version TEXT NOT NULL, PRIMARY KEY (run_id, step, channel));
CREATE TABLE IF NOT EXISTS products (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE, path TEXT NOT NULL, PRIMARY KEY (run_id, path));
CREATE INDEX IF NOT EXISTS runs_by_sample ON runs(sample, started);
"""

#: Header parameters that name the sample, in the order they are looked for.
SAMPLE_KEYS = ("sample", "material", "lattice")


@dataclasses.dataclass(frozen=True)
class RunEntry:
    """One catalogued run."""

    run_id: str
    run_dir: str
    sample: str
    plan: str
    microscope: str
    started: str
    ended: str | None
    outcome: str
    steps: int
    dose_e: float
    model_versions: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class FrameEntry:
    """One recorded image: its ``.npy`` file, and the run, step and model version that produced it."""

    path: str
    run_id: str
    step: int
    channel: str
    sample: str
    model_version: str


def start_of_week(now: datetime.datetime | None = None) -> datetime.datetime:
    """Monday 00:00 UTC of the week of ``now`` (default: today), for "from this week" queries.

    Examples
    --------
    >>> start_of_week(datetime.datetime(2026, 11, 29, 15, tzinfo=datetime.UTC)).isoformat()
    '2026-11-23T00:00:00+00:00'
    """
    now = now or datetime.datetime.now(datetime.UTC)
    day = now.astimezone(datetime.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - datetime.timedelta(days=day.weekday())


class RunCatalog:
    """A searchable catalog of runs in an SQLite file.

    Parameters
    ----------
    path : str or Path
        Database file (created if needed), or ``":memory:"``.

    Examples
    --------
    >>> catalog = RunCatalog(":memory:")
    >>> catalog.frames(sample="MoS2", since=start_of_week())
    []
    >>> catalog.close()
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a database file path (str or Path) or ':memory:', got {type(path).__name__}")
        if str(path) != ":memory:":
            path = pathlib.Path(path).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
        # Registration may come from a run's worker thread while a panel queries; each call is one transaction.
        self.__db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.__lock = threading.Lock()  # one connection, so one transaction at a time
        self.__db.execute("PRAGMA foreign_keys = ON")
        self.__db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        with self.__lock:
            self.__db.close()

    def register(self, run_dir: str | os.PathLike[str], *, sample: str | None = None) -> RunEntry:
        """Add (or refresh) the run in ``run_dir``.

        Parameters
        ----------
        run_dir : path
            A run directory holding ``journal.jsonl``.
        sample : str, optional
            What was imaged; by default the run's ``sample``, ``material`` or ``lattice`` parameter.

        Returns
        -------
        RunEntry

        Raises
        ------
        FileNotFoundError
            If ``run_dir`` holds no journal.
        ValueError
            If the journal has no header (not a run the runner wrote).
        """
        record = read_journal(run_dir)
        header = record.header
        if not header.get("run_id"):
            raise ValueError(f"run_dir must hold a journal with a header naming its run_id, {pathlib.Path(run_dir) / JOURNAL_NAME} has none")
        parameters = header.get("parameters") or {}
        if sample is None:
            sample = next((str(parameters[key]) for key in SAMPLE_KEYS if parameters.get(key)), "")
        end = record.end or {}
        frames = []
        for step in record.steps:
            for channel, info in step.entry.get("data", {}).items():
                shape = list(info.get("shape", []))
                if len(shape) == 2:  # an image; spectra and traces are not training frames
                    frames.append((header["run_id"], step.step, channel, str((record.run_dir / info["file"]).resolve()), str(step.entry.get("measurement_kind", "")),
                                   json.dumps(shape), str(step.entry.get("model_version", ""))))
        model_versions = sorted({str(step.entry.get("model_version")) for step in record.steps if step.entry.get("model_version")})
        entry = RunEntry(
            run_id=str(header["run_id"]),
            run_dir=str(record.run_dir.resolve()),
            sample=sample,
            plan=str(header.get("plan", "")),
            microscope=str(header.get("microscope", "")),
            started=_utc(str(header.get("time", ""))),
            ended=_utc(str(end["time"])) if end.get("time") else None,
            outcome=str(end.get("state", "incomplete")),
            steps=len(record.steps),
            dose_e=float(end.get("dose_e", sum(float(s.entry.get("dose_e", 0.0)) for s in record.steps))),
            model_versions=tuple(model_versions),
        )
        skip = {JOURNAL_NAME}
        products = [str(p.resolve()) for p in sorted(record.run_dir.rglob("*")) if p.is_file() and p.name not in skip and "data" not in p.relative_to(record.run_dir).parts[:1]]
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        with self.__lock, self.__db:
            self.__db.execute("BEGIN")
            self.__db.execute("DELETE FROM runs WHERE run_id = ?", (entry.run_id,))
            self.__db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                              (entry.run_id, entry.run_dir, entry.sample, entry.plan, entry.microscope, entry.started, entry.ended, entry.outcome,
                               entry.steps, entry.dose_e, json.dumps(list(entry.model_versions)), now))
            self.__db.executemany("INSERT INTO frames VALUES (?, ?, ?, ?, ?, ?, ?)", frames)
            self.__db.executemany("INSERT INTO products VALUES (?, ?)", [(entry.run_id, p) for p in products])
        return entry

    def runs(self, *, sample: str | None = None, plan: str | None = None, since: datetime.datetime | None = None, until: datetime.datetime | None = None,
             model_version: str | None = None, outcome: str | None = None) -> list[RunEntry]:
        """Runs matching every criterion given (sample case-insensitive), oldest first.

        Examples
        --------
        >>> RunCatalog(":memory:").runs(sample="graphene", outcome="finished")
        []
        """
        where, values = _where(sample, plan, since, until, model_version, outcome)
        with self.__lock:
            rows = self.__db.execute(f"SELECT run_id, run_dir, sample, plan, microscope, started, ended, outcome, steps, dose_e, model_versions FROM runs r {where} "
                                     "ORDER BY started", values).fetchall()
        return [RunEntry(run_id=row[0], run_dir=row[1], sample=row[2], plan=row[3], microscope=row[4], started=row[5], ended=row[6], outcome=row[7],
                         steps=row[8], dose_e=row[9], model_versions=tuple(json.loads(row[10]))) for row in rows]

    def frames(self, *, sample: str | None = None, plan: str | None = None, since: datetime.datetime | None = None, until: datetime.datetime | None = None,
               model_version: str | None = None, outcome: str | None = None, channel: str | None = None) -> list[FrameEntry]:
        """Image frames of the runs matching every criterion given, in run and step order.

        ``model_version`` selects frames whose step was decided with that model version.

        Examples
        --------
        >>> RunCatalog(":memory:").frames(sample="MoS2", channel="HAADF")
        []
        """
        where, values = _where(sample, plan, since, until, None, outcome)
        clauses = [where] if where else []
        if model_version is not None:
            clauses.append(("AND" if clauses else "WHERE") + " f.model_version = ?")
            values.append(model_version)
        if channel is not None:
            clauses.append(("AND" if clauses else "WHERE") + " f.channel = ?")
            values.append(channel)
        with self.__lock:
            rows = self.__db.execute(f"SELECT f.path, f.run_id, f.step, f.channel, r.sample, f.model_version FROM frames f JOIN runs r USING (run_id) {' '.join(clauses)} "
                                     "ORDER BY r.started, f.run_id, f.step, f.channel", values).fetchall()
        return [FrameEntry(*row) for row in rows]

    def products(self, run_id: str) -> list[str]:
        """Files a run left besides its journal and step data (exports, reports)."""
        with self.__lock:
            return [row[0] for row in self.__db.execute("SELECT path FROM products WHERE run_id = ? ORDER BY path", (run_id,))]


def _utc(text: str) -> str:
    """ISO time in UTC, so that string order is time order in the database."""
    if not text:
        return ""
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC).isoformat()


def _where(sample: str | None, plan: str | None, since: datetime.datetime | None, until: datetime.datetime | None,
           model_version: str | None, outcome: str | None) -> tuple[str, list[typing.Any]]:
    clauses, values = [], []
    for column, value in (("r.sample = ?", sample), ("r.plan = ?", plan), ("r.outcome = ?", outcome)):
        if value is not None:
            clauses.append(column)
            values.append(value)
    for column, moment, name in (("r.started >= ?", since, "since"), ("r.started < ?", until, "until")):
        if moment is not None:
            if not isinstance(moment, datetime.datetime):
                raise TypeError(f"{name} must be a datetime (e.g. start_of_week()), got {type(moment).__name__}")
            clauses.append(column)
            values.append(_utc(moment.isoformat()))
    if model_version is not None:
        clauses.append("EXISTS (SELECT 1 FROM json_each(r.model_versions) WHERE value = ?)")
        values.append(model_version)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", values
