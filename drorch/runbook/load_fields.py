"""Field readers for runbook loading: each reads one located YAML value, reports what is
wrong with it at its position (`file:line:col: CODE: message`), and returns a value or
None. `drorch.runbook.load` puts them together."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from drorch.model.reports import Position, ReportItem
from drorch.model.source import Located
from drorch.runbook.model import Retry
from drorch.runbook.steps.base import REQUIRED, Param, ParamKind, parse_duration

MAX_ATTEMPTS = 100


class Reports:
    """Collects every problem of one file."""

    def __init__(self) -> None:
        self.items: list[ReportItem] = []

    def error(self, code: str, message: str, position: Position) -> None:
        self.items.append(ReportItem(code, message, position))


def did_you_mean(word: str, known: Iterable[str]) -> str:
    hits = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean {hits[0]!r}?)" if hits else ""


def mapping(node: Located, what: str, reports: Reports) -> dict[str, Located] | None:
    if not isinstance(node.value, dict):
        reports.error("bad-type", f"{what} must be a mapping", node.position)
        return None
    return node.value


def check_keys(
    node: Located, allowed: Iterable[str], required: Iterable[str], what: str, reports: Reports
) -> None:
    allowed = list(allowed)
    assert isinstance(node.value, dict)
    for key in node.value:
        if key not in allowed:
            reports.error(
                "unknown-key",
                f"{what}: unknown key {key!r}{did_you_mean(key, allowed)}",
                node.key_positions.get(key, node.position),
            )
    for key in required:
        if key not in node.value:
            reports.error("missing-key", f"{what}: {key!r} is required", node.position)


def string(node: Located, what: str, reports: Reports, *, empty_ok: bool = False) -> str | None:
    if not isinstance(node.value, str) or (not empty_ok and not node.value.strip()):
        reports.error("bad-type", f"{what} must be a non-empty string", node.position)
        return None
    return node.value


def duration(node: Located, what: str, reports: Reports, *, zero_ok: bool = False) -> float | None:
    try:
        seconds = parse_duration(node.value)
    except ValueError as exc:
        reports.error("bad-value", f"{what}: {exc}", node.position)
        return None
    if seconds == 0 and not zero_ok:
        reports.error("bad-value", f"{what} must be more than 0", node.position)
        return None
    return seconds


PARAM_KEYS = ("type", "default", "doc", "choices")


def runbook_param(name: str, node: Located, reports: Reports) -> Param | None:
    what = f"param {name!r}"
    body = mapping(node, what, reports)
    if body is None:
        return None
    check_keys(node, PARAM_KEYS, ("type",), what, reports)
    kinds = [k.value for k in ParamKind]
    kind_node = body.get("type")
    kind: ParamKind | None = None
    if kind_node is not None:
        if kind_node.value in kinds:
            kind = ParamKind(kind_node.value)
        else:
            reports.error(
                "bad-value",
                f"{what}: type {kind_node.value!r} is not one of {', '.join(kinds)}"
                + did_you_mean(str(kind_node.value), kinds),
                kind_node.position,
            )
    doc = ""
    if "doc" in body:
        doc = string(body["doc"], f"{what} doc", reports, empty_ok=True) or ""
    choices: tuple[str, ...] = ()
    if "choices" in body:
        raw = body["choices"].plain()
        if not isinstance(raw, list) or not raw or not all(isinstance(c, str) for c in raw):
            reports.error(
                "bad-type", f"{what}: choices must be a list of strings", body["choices"].position
            )
        else:
            choices = tuple(raw)
    if kind is None:
        return None
    param = Param(name, kind, doc, REQUIRED, choices)
    if "default" in body:
        try:
            param = Param(name, kind, doc, param.coerce(body["default"].plain()), choices)
        except ValueError as exc:
            reports.error("bad-value", f"{what} default: {exc}", body["default"].position)
            return None
    return param


RETRY_KEYS = ("attempts", "backoff", "multiplier", "max_backoff", "codes", "deadline")


def retry(node: Located, step_timeout: float | None, what: str, reports: Reports) -> Retry | None:
    """The retry policy. Retries need codes to retry on and a total deadline: an explicit
    `deadline`, else derived from the step's `timeout` per attempt plus the backoffs."""
    body = mapping(node, f"{what} retry", reports)
    if body is None:
        return None
    check_keys(node, RETRY_KEYS, ("attempts",), f"{what} retry", reports)
    ok = True
    attempts = 1
    if "attempts" in body:
        raw = body["attempts"].value
        if not isinstance(raw, int) or isinstance(raw, bool) or not 1 <= raw <= MAX_ATTEMPTS:
            reports.error(
                "bad-retry",
                f"{what} retry attempts must be an integer from 1 to {MAX_ATTEMPTS}",
                body["attempts"].position,
            )
            ok = False
        else:
            attempts = raw
    backoff = (
        duration(body["backoff"], f"{what} retry backoff", reports) if "backoff" in body else 1.0
    )
    max_backoff = (
        duration(body["max_backoff"], f"{what} retry max_backoff", reports)
        if "max_backoff" in body
        else 30.0
    )
    multiplier = 2.0
    if "multiplier" in body:
        raw = body["multiplier"].value
        if not isinstance(raw, int | float) or isinstance(raw, bool) or not 1 <= raw <= 10:
            reports.error(
                "bad-retry",
                f"{what} retry multiplier must be from 1 to 10",
                body["multiplier"].position,
            )
            ok = False
        else:
            multiplier = float(raw)
    codes: tuple[str, ...] = ()
    if "codes" in body:
        raw = body["codes"].plain()
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not raw or not all(isinstance(c, str) and c for c in raw):
            reports.error(
                "bad-retry", f"{what} retry codes: a list of error codes", body["codes"].position
            )
            ok = False
        else:
            codes = tuple(raw)
    elif attempts > 1:
        reports.error(
            "bad-retry",
            f"{what} retry: name the error codes to retry ('codes'); retrying every failure "
            "could repeat a step that half-happened",
            node.position,
        )
        ok = False
    deadline = (
        duration(body["deadline"], f"{what} retry deadline", reports)
        if "deadline" in body
        else None
    )
    if (
        backoff is None
        or max_backoff is None
        or not ok
        or ("deadline" in body and deadline is None)
    ):
        return None
    if deadline is None and attempts > 1:
        if step_timeout is None:
            reports.error(
                "bad-retry",
                f"{what} retry needs a total deadline: set retry deadline or the step's timeout",
                node.position,
            )
            return None
        waits = sum(min(backoff * multiplier**i, max_backoff) for i in range(attempts - 1))
        deadline = attempts * step_timeout + waits
    return Retry(attempts, backoff, multiplier, max_backoff, codes, deadline)
