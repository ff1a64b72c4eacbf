"""The drill history: one SQLite file under the state directory (`drills.sqlite`).

`drills` has one row per drill that was due: run, skipped (a preflight guard refused
it: the codes and reasons are kept), missed (the scheduler was down or the sites
were busy past its starting deadline) or interrupted (its process died before it
recorded a result: drorch.drill.interrupted). A run row keeps the runbook run id, so the step
timeline comes from the runbook journal, and its measurements: RTO, RPO, total time
and, in `drill_vms`, each VM's downtime. `scheduler` keeps, per (cluster, drill), the
nominal time of the last occurrence the scheduler dealt with, so a restarted scheduler
knows which runs it missed. Several processes write it (the scheduler, each drill it
starts): WAL and a busy timeout.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

HISTORY_FILE = "drills.sqlite"
RESULTS = (
    "running", "succeeded", "failed", "rolled-back", "skipped", "missed", "cleaned",
    "interrupted",
)  # fmt: skip

SCHEMA = """
CREATE TABLE IF NOT EXISTS drills (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cluster TEXT NOT NULL,
    drill TEXT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    scheduled_for REAL,
    started_at REAL NOT NULL,
    ended_at REAL,
    result TEXT NOT NULL,
    run_id TEXT NOT NULL DEFAULT '',
    reasons TEXT NOT NULL DEFAULT '[]',
    rto_s REAL,
    rpo_bytes INTEGER,
    total_s REAL,
    max_downtime_s REAL,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS drills_by_name ON drills(cluster, drill, started_at);
CREATE TABLE IF NOT EXISTS drill_vms (
    drill_id INTEGER NOT NULL REFERENCES drills(id),
    vm TEXT NOT NULL,
    downtime_s REAL NOT NULL,
    PRIMARY KEY (drill_id, vm)
);
CREATE TABLE IF NOT EXISTS scheduler (
    cluster TEXT NOT NULL,
    drill TEXT NOT NULL,
    last_nominal REAL NOT NULL,
    PRIMARY KEY (cluster, drill)
);
"""


class HistoryError(RuntimeError):
    """The history database cannot be opened or written."""


@dataclass(frozen=True)
class Reason:
    """Why a drill did not run (or failed): a stable code and a sentence."""

    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass
class DrillRow:
    id: int
    cluster: str
    drill: str
    kind: str
    target: str
    scheduled_for: float | None
    started_at: float
    ended_at: float | None
    result: str
    run_id: str = ""
    reasons: list[Reason] = field(default_factory=list)
    rto_s: float | None = None
    rpo_bytes: int | None = None
    total_s: float | None = None
    max_downtime_s: float | None = None
    downtime_s: dict[str, float] = field(default_factory=dict)
    data: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id, "cluster": self.cluster, "drill": self.drill, "kind": self.kind,
            "target": self.target, "scheduled_for": self.scheduled_for,
            "started_at": self.started_at, "ended_at": self.ended_at, "result": self.result,
            "run_id": self.run_id or None, "reasons": [r.as_dict() for r in self.reasons],
            "rto_s": self.rto_s, "rpo_bytes": self.rpo_bytes, "total_s": self.total_s,
            "max_downtime_s": self.max_downtime_s, "downtime_s": dict(self.downtime_s),
            "data": self.data,
        }  # fmt: skip


class History:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / HISTORY_FILE
        try:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise HistoryError(f"cannot open the drill history {self.path}: {exc}") from exc

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writing -----------------------------------------------------------------

    def begin(
        self, cluster: str, drill: str, kind: str, target: str, at: float,
        scheduled_for: float | None = None, data: dict[str, object] | None = None,
    ) -> int:  # fmt: skip
        """A drill starts: a `running` row, finished by finish(). `data` says which
        process runs it (drorch.drill.liveness.own_process), so a row whose process died
        can be told from a running one."""
        drill_id = self._insert(cluster, drill, kind, target, at, None, "running", scheduled_for)
        if data:
            self.db.execute("UPDATE drills SET data=? WHERE id=?", (json.dumps(data), drill_id))
        return drill_id

    def interrupt(self, drill_id: int, at: float, reason: Reason) -> bool:
        """A `running` row whose process is gone: `interrupted`, with the reason. False
        when the row is not `running` (it finished meanwhile)."""
        cur = self.db.execute(
            "UPDATE drills SET ended_at=?, result='interrupted', reasons=? "
            "WHERE id=? AND result='running'", (at, _reasons_json([reason]), drill_id),
        )  # fmt: skip
        return cur.rowcount == 1

    def finish(
        self, drill_id: int, at: float, result: str, *, run_id: str = "",
        reasons: list[Reason] | None = None, rto_s: float | None = None,
        rpo_bytes: int | None = None, total_s: float | None = None,
        downtime_s: dict[str, float] | None = None, data: dict[str, object] | None = None,
    ) -> None:  # fmt: skip
        if result not in RESULTS:
            raise ValueError(f"unknown drill result {result!r}")
        downs = downtime_s or {}
        with self._tx():
            self.db.execute(
                "UPDATE drills SET ended_at=?, result=?, run_id=?, reasons=?, rto_s=?, "
                "rpo_bytes=?, total_s=?, max_downtime_s=?, data=? WHERE id=?",
                (at, result, run_id, _reasons_json(reasons), rto_s, rpo_bytes, total_s,
                 max(downs.values()) if downs else None, json.dumps(data or {}), drill_id),
            )  # fmt: skip
            for vm, down in downs.items():
                self.db.execute(
                    "INSERT OR REPLACE INTO drill_vms(drill_id, vm, downtime_s) VALUES (?,?,?)",
                    (drill_id, vm, down),
                )

    def forget(self, drill_id: int) -> None:
        """Drop a row that should never have been one (a run the operator could not
        confirm: not a drill that was due and skipped)."""
        self.db.execute("DELETE FROM drills WHERE id=? AND result='running'", (drill_id,))

    def set_run_id(self, drill_id: int, run_id: str) -> None:
        self.db.execute("UPDATE drills SET run_id=? WHERE id=?", (run_id, drill_id))

    def skip(
        self, cluster: str, drill: str, kind: str, target: str, at: float, result: str,
        reasons: list[Reason], scheduled_for: float | None = None,
    ) -> int:  # fmt: skip
        """A drill that did not run (`skipped` by a guard, `missed` by the scheduler)."""
        drill_id = self._insert(cluster, drill, kind, target, at, at, result, scheduled_for)
        self.db.execute(
            "UPDATE drills SET reasons=? WHERE id=?", (_reasons_json(reasons), drill_id)
        )
        return drill_id

    def _insert(
        self, cluster: str, drill: str, kind: str, target: str, at: float,
        ended: float | None, result: str, scheduled_for: float | None,
    ) -> int:  # fmt: skip
        try:
            cur = self.db.execute(
                "INSERT INTO drills(cluster, drill, kind, target, scheduled_for, started_at, "
                "ended_at, result) VALUES (?,?,?,?,?,?,?,?)",
                (cluster, drill, kind, target, scheduled_for, at, ended, result),
            )
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot write the drill history {self.path}: {exc}") from exc
        assert cur.lastrowid is not None
        return cur.lastrowid

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """One transaction (the connection is in autocommit mode otherwise)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ---- the scheduler's memory ------------------------------------------------------

    def last_nominal(self, cluster: str, drill: str) -> float | None:
        row = self.db.execute(
            "SELECT last_nominal FROM scheduler WHERE cluster=? AND drill=?", (cluster, drill)
        ).fetchone()
        return None if row is None else float(row[0])

    def set_last_nominal(self, cluster: str, drill: str, nominal: float) -> None:
        self.db.execute(
            "INSERT INTO scheduler(cluster, drill, last_nominal) VALUES (?,?,?) "
            "ON CONFLICT(cluster, drill) DO UPDATE SET last_nominal=excluded.last_nominal",
            (cluster, drill, nominal),
        )

    # ---- reading -------------------------------------------------------------------

    def rows(
        self, cluster: str | None = None, drill: str | None = None, limit: int = 100,
        results: tuple[str, ...] = (),
    ) -> list[DrillRow]:  # fmt: skip
        """The newest `limit` rows, oldest first."""
        where, args = ["1=1"], []
        if cluster:
            where.append("cluster=?")
            args.append(cluster)
        if drill:
            where.append("drill=?")
            args.append(drill)
        if results:
            where.append(f"result IN ({','.join('?' * len(results))})")
            args.extend(results)
        sql = (
            f"SELECT * FROM drills WHERE {' AND '.join(where)} ORDER BY started_at DESC, "
            "id DESC LIMIT ?"
        )
        found = [self._row(r) for r in self.db.execute(sql, (*args, limit)).fetchall()]
        return list(reversed(found))

    def get(self, key: str) -> DrillRow | None:
        """A row by its id or its runbook run id."""
        if key.isdigit():
            row = self.db.execute("SELECT * FROM drills WHERE id=?", (int(key),)).fetchone()
        else:
            row = self.db.execute(
                "SELECT * FROM drills WHERE run_id=? ORDER BY id DESC", (key,)
            ).fetchone()
        return None if row is None else self._row(row)

    def _row(self, r: tuple[object, ...]) -> DrillRow:
        cols = [c[0] for c in self.db.execute("SELECT * FROM drills LIMIT 0").description]
        v = dict(zip(cols, r, strict=True))
        downs = {
            str(vm): float(d)
            for vm, d in self.db.execute(
                "SELECT vm, downtime_s FROM drill_vms WHERE drill_id=? ORDER BY vm", (v["id"],)
            )
        }
        return DrillRow(
            id=int(v["id"]),
            cluster=str(v["cluster"]), drill=str(v["drill"]), kind=str(v["kind"]),
            target=str(v["target"]), scheduled_for=_float(v["scheduled_for"]),
            started_at=float(v["started_at"]),
            ended_at=_float(v["ended_at"]), result=str(v["result"]), run_id=str(v["run_id"]),
            reasons=[Reason(x["code"], x["message"]) for x in json.loads(str(v["reasons"]))],
            rto_s=_float(v["rto_s"]),
            rpo_bytes=None if v["rpo_bytes"] is None else int(v["rpo_bytes"]),
            total_s=_float(v["total_s"]), max_downtime_s=_float(v["max_downtime_s"]),
            downtime_s=downs, data=json.loads(str(v["data"])),
        )  # fmt: skip


def _float(v: object) -> float | None:
    return None if v is None else float(v)  # type: ignore[arg-type]


def _reasons_json(reasons: list[Reason] | None) -> str:
    return json.dumps([r.as_dict() for r in reasons or []])
