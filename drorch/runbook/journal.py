"""The runbook journal: one SQLite file under `Environment.state_dir`, append-only.

Every run is a row in `runs` (the runbook's text and params are kept, so a resumed run
carries out exactly what was started); everything that happens is an `events` row:
`start` and `end` of each step attempt, `confirm` (who answered a gate), `skip` (a
`when:` that was false), `expand` (the plan a `plan.execute` computed), `probe`
(what resume found), `rollback` (the rollback began). Each event is committed
(WAL, synchronous=FULL) before the engine goes on, so a kill -9 loses at most the
step that was running, and resume asks that step's probe.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    cluster TEXT NOT NULL,
    runbook TEXT NOT NULL,
    runbook_file TEXT NOT NULL,
    runbook_text TEXT NOT NULL,
    config TEXT NOT NULL,
    params TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    user TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    at REAL NOT NULL,
    step TEXT NOT NULL,
    kind TEXT NOT NULL,
    phase TEXT NOT NULL DEFAULT 'main',
    action TEXT NOT NULL DEFAULT '',
    attempt INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT '',
    changed INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    data TEXT NOT NULL DEFAULT '{}',
    confirmer TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_by_run ON events(run_id, seq);
"""

JOURNAL_FILE = "runbooks.sqlite"
RUNNING = "running"  # a run in progress, or one killed before it ended (resumable)
FINAL = ("succeeded", "failed", "rolled-back", "rollback-failed", "declined", "abandoned")


class JournalError(RuntimeError):
    """The journal cannot be opened or written (path, permissions, corruption)."""


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    cluster: str
    runbook: str
    runbook_file: str
    runbook_text: str
    config: str
    params: dict[str, object]
    dry_run: bool
    user: str
    host: str
    pid: int
    started_at: float
    ended_at: float | None
    status: str
    message: str


@dataclass(frozen=True)
class Event:
    seq: int
    run_id: str
    at: float
    step: str
    kind: str
    phase: str
    action: str
    attempt: int
    status: str
    changed: bool
    message: str
    data: dict[str, object]
    confirmer: str


BATCH = 256  # events per transaction in a relaxed (dry-run) journal


class Journal:
    """Open (creating) the journal in `state_dir`. Not shared between threads."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / JOURNAL_FILE
        self._batch = False
        self._pending = 0
        try:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open the runbook journal {self.path}: {exc}") from exc

    def close(self) -> None:
        if self._batch and self._db.in_transaction:
            self._db.execute("COMMIT")
        self._db.close()

    def relax(self) -> None:
        """Group events into transactions of up to BATCH and commit them without waiting
        for the disk (WAL, synchronous=NORMAL): still atomic, but a crash may lose the
        last events. Only for dry runs, which change nothing and are never resumed; a
        real run's every event stays durable before the engine goes on."""
        try:
            self._db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise JournalError(f"cannot configure the runbook journal {self.path}: {exc}") from exc
        self._batch = True

    @contextmanager
    def _write(self, flush: bool = False) -> Iterator[sqlite3.Connection]:
        try:
            if not self._db.in_transaction:
                self._db.execute("BEGIN IMMEDIATE")
            yield self._db
            self._pending += 1
            if not self._batch or flush or self._pending >= BATCH:
                self._db.execute("COMMIT")
                self._pending = 0
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise JournalError(f"cannot write the runbook journal {self.path}: {exc}") from exc

    def create_run(self, record: RunRecord) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    record.run_id, record.cluster, record.runbook, record.runbook_file,
                    record.runbook_text, record.config, json.dumps(record.params),
                    int(record.dry_run), record.user, record.host, record.pid,
                    record.started_at, record.ended_at, record.status, record.message,
                ),
            )  # fmt: skip

    def set_status(
        self, run_id: str, status: str, message: str = "", *, ended_at: float | None = None,
        pid: int | None = None,
    ) -> None:  # fmt: skip
        with self._write(flush=True) as db:
            db.execute(
                "UPDATE runs SET status=?, message=?, ended_at=?, pid=COALESCE(?, pid) "
                "WHERE run_id=?",
                (status, message, ended_at, pid, run_id),
            )

    def append(
        self,
        run_id: str,
        at: float,
        step: str,
        kind: str,
        *,
        phase: str = "main",
        action: str = "",
        attempt: int = 0,
        status: str = "",
        changed: bool = False,
        message: str = "",
        data: Mapping[str, object] | None = None,
        confirmer: str = "",
    ) -> None:
        """Append one event and commit it (durable before this returns)."""
        blob = json.dumps(dict(data or {}), default=str, sort_keys=True)
        with self._write() as db:
            db.execute(
                "INSERT INTO events (run_id, at, step, kind, phase, action, attempt, status, "
                "changed, message, data, confirmer) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, at, step, kind, phase, action, attempt, status, int(changed),
                 message, blob, confirmer),
            )  # fmt: skip

    def run(self, run_id: str) -> RunRecord | None:
        row = self._db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return None if row is None else _run(row)

    def runs(self, cluster: str | None = None, limit: int = 50) -> list[RunRecord]:
        sql = "SELECT * FROM runs"
        args: tuple[str, ...] = ()
        if cluster is not None:
            sql, args = sql + " WHERE cluster=?", (cluster,)
        rows = self._db.execute(sql + " ORDER BY started_at DESC LIMIT ?", (*args, limit))
        return [_run(r) for r in rows.fetchall()]

    def events(self, run_id: str) -> list[Event]:
        rows = self._db.execute("SELECT * FROM events WHERE run_id=? ORDER BY seq", (run_id,))
        return [_event(r) for r in rows.fetchall()]


def _event(r: tuple[object, ...]) -> Event:
    return Event(
        int(str(r[0])), str(r[1]), float(str(r[2])), str(r[3]), str(r[4]), str(r[5]),
        str(r[6]), int(str(r[7])), str(r[8]), bool(r[9]), str(r[10]), json.loads(str(r[11])),
        str(r[12]),
    )  # fmt: skip


def _run(row: tuple[object, ...]) -> RunRecord:
    (run_id, cluster, runbook, rb_file, rb_text, config, params, dry, user, host, pid,
     started, ended, status, message) = row  # fmt: skip
    return RunRecord(
        str(run_id), str(cluster), str(runbook), str(rb_file), str(rb_text), str(config),
        json.loads(str(params)), bool(dry), str(user), str(host), int(str(pid)),
        float(str(started)), None if ended is None else float(str(ended)), str(status),
        str(message),
    )  # fmt: skip
