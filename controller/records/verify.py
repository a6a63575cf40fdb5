"""``furnace verify``: is this batch folder what the controller wrote, all of it?

Checks the audit chain, the frozen recipe and station, trace.csv against the trace hashes
the audit records, summary.json against the ``batch_ended`` record, and optionally the
anchor log kept outside the folder. Reads files only. Not here: the formats themselves
(``audit``, ``trace``, ``batch`` and ``anchor`` own them) or printing (the CLI).

What each check catches, and what only the anchor log can (docs/decisions/0007):
- an edited, added, removed or reordered audit record: the chain;
- an edited, deleted or added trace row: the trace hash in the last ``checkpoint`` (rows
  after it are reported as not yet covered while the batch runs) or in ``batch_ended``;
- an edited summary field: ``summary_sha256`` in ``batch_ended``;
- dropped tail records with the summary's count "fixed": the chain must end with
  ``batch_ended`` when there is a summary;
- a chain rewritten from scratch, hashes and all: only the anchor log.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from controller.records.anchor import check_anchor, find_anchor
from controller.records.audit import FIRST_EVENT, RecordError, scan_chain
from controller.records.batch import read_summary, summary_digest
from controller.records.folder import (
    AUDIT_FILE,
    MAPS_DIR,
    RECIPE_FILE,
    STATION_FILE,
    SUMMARY_FILE,
    TRACE_FILE,
)
from controller.records.trace import TRACE_FIELDS

__all__ = ["END_EVENT", "Verdict", "VerifyResult", "verify_batch"]

#: The record that ends a batch: the last one in the chain of a batch with a summary.
END_EVENT: Final = "batch_ended"
_HEX64: Final = re.compile(r"[0-9a-f]{64}")
# How the session records that the trace stopped (a full disk) while the audit went on.
_STOPPED_EVENT, _STOPPED_WHAT = "records_degraded", "trace stopped"


class Verdict(StrEnum):
    """What ``furnace verify`` says about a folder (its exit code: 0, 0, 1, 2)."""

    INTACT = "intact"
    INTERRUPTED = "intact so far, interrupted"
    TAMPERED = "tampered or damaged"
    NOT_A_BATCH = "not a batch"


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The verdict on one batch folder.

    ``records`` counts the audit records that are intact and chained from the start;
    ``first_bad`` is the index (= seq = line - 1) of the first bad or missing record, or
    None when the chain is fine and the fault lies elsewhere (summary, trace, frozen
    files, anchor). ``reason`` is one line; ``warnings`` list what is not tampering but
    was not checked or looks odd (wall clock going back, rows not yet covered).
    """

    verdict: Verdict
    records: int
    first_bad: int | None
    reason: str
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Intact, or intact so far (an interrupted batch)."""
        return self.verdict in (Verdict.INTACT, Verdict.INTERRUPTED)


class _TamperedError(Exception):
    """Internal: a check failed. ``first_bad`` as in ``VerifyResult``."""

    def __init__(self, reason: str, first_bad: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.first_bad = first_bad


def verify_batch(batch_dir: Path, *, anchor_log: Path | None = None) -> VerifyResult:
    """Check a batch folder; with ``anchor_log``, also against that anchor log.

    In order: the folder is a batch (a directory with audit.jsonl, and either the frozen
    recipe and station or a first record ``batch_created``; else ``NOT_A_BATCH``); every
    audit line is intact and chained (a torn last line is tolerated only in an
    interrupted batch); recipe.toml and station.toml match record 0; summary.json, if
    any, points at the last record, which is ``batch_ended``, and matches its
    ``summary_sha256``; trace.csv matches every trace hash recorded; the anchor log's
    line for the batch names this chain. Records made before trace or summary hashing
    existed are checked as far as they go, with a warning. Never raises for a bad batch;
    raises ``OSError`` only if ``anchor_log`` cannot be read.
    """
    audit_path = batch_dir / AUDIT_FILE
    if not batch_dir.is_dir():
        return VerifyResult(Verdict.NOT_A_BATCH, 0, None, "not a folder")
    try:
        data = audit_path.read_bytes()
    except FileNotFoundError:
        return VerifyResult(Verdict.NOT_A_BATCH, 0, None, f"no {AUDIT_FILE}")
    except OSError as exc:
        return VerifyResult(Verdict.TAMPERED, 0, None,
                            f"{AUDIT_FILE}: cannot read ({exc.strerror or exc})")
    why_not = _not_a_batch(batch_dir, data)
    if why_not:
        return VerifyResult(Verdict.NOT_A_BATCH, 0, None, why_not)
    scan = scan_chain(data)
    count, warnings = scan.count, list(scan.warnings)
    if scan.bad_index is not None:
        return VerifyResult(Verdict.TAMPERED, count, scan.bad_index,
                            f"{AUDIT_FILE}: {scan.reason}", tuple(warnings))
    records: list[dict[str, Any]] = [json.loads(line)  # each already checked by the scan
                                     for line in data[:scan.end_offset].split(b"\n")[:-1]]
    try:
        notes, verdict = _check(batch_dir, records, scan.torn_tail, warnings)
        if anchor_log is not None:
            notes.append(_check_anchor(anchor_log, batch_dir, records, verdict, warnings))
    except _TamperedError as exc:
        return VerifyResult(Verdict.TAMPERED, count, exc.first_bad, exc.reason,
                            tuple(warnings))
    last = records[-1]
    if verdict is Verdict.INTACT:
        head = f"intact: {count} records, final hash {scan.final_hash}"
    else:
        head = (f"intact so far, interrupted: {count} records, the last {last['event'][:40]!r} "
                f"at t = {last['t_s']:g} s (no {END_EVENT!r} record, no {SUMMARY_FILE})")
    return VerifyResult(verdict, count, None, "; ".join([head, *notes]), tuple(warnings))


def _not_a_batch(batch_dir: Path, data: bytes) -> str:
    """Why the folder is not a batch at all, or "" if it is one (intact or not).

    A batch folder holds the frozen recipe and station and an audit that starts with
    ``batch_created``. With the frozen files there, anything wrong with the first record
    is damage (exit 1); without them, a first line that is not a ``batch_created`` record
    means some other folder (exit 2), and so does an audit without a complete line.
    """
    end = data.find(b"\n")
    if end < 0:
        return f"{AUDIT_FILE} holds no complete record (a batch that never started?)"
    if (batch_dir / RECIPE_FILE).is_file() and (batch_dir / STATION_FILE).is_file():
        return ""
    try:
        first = json.loads(data[:end].decode("utf-8"))
    except (ValueError, RecursionError):
        first = None
    event = first.get("event") if isinstance(first, dict) else None
    if event == FIRST_EVENT:
        return ""
    if isinstance(event, str):
        return f"the first record of {AUDIT_FILE} is {event[:40]!r}, not {FIRST_EVENT!r}"
    return f"the first line of {AUDIT_FILE} is not an audit record"


def _check(batch_dir: Path, records: list[dict[str, Any]], torn_tail: bytes,
           warnings: list[str]) -> tuple[list[str], Verdict]:
    """Everything after the chain itself. Raises ``_TamperedError``; appends to ``warnings``."""
    count = len(records)
    ended = records[-1]["event"] == END_EVENT
    has_summary = (batch_dir / SUMMARY_FILE).exists()
    if torn_tail:
        if ended or has_summary:
            raise _TamperedError(f"{AUDIT_FILE}: record {count} (line {count + 1}): torn last "
                                 f"line, {len(torn_tail)} bytes without a newline (interrupted "
                                 "write)", count)
        warnings.append(f"{AUDIT_FILE}: a torn last line of {len(torn_tail)} bytes (an "
                        "append cut short by the crash; resume removes it)")
    _check_frozen(batch_dir, records[0])
    if has_summary:
        _check_summary(batch_dir, records, warnings)
    elif ended:
        tmp = (batch_dir / (SUMMARY_FILE + ".tmp")).exists()
        raise _TamperedError(f"{SUMMARY_FILE}: missing, but the chain ended (record {count - 1} "
                             f"is {END_EVENT!r}): deleted, or the run died while writing it"
                             + (f" ({SUMMARY_FILE}.tmp is there)" if tmp else ""))
    notes = _check_trace(batch_dir, records, ended, warnings)
    return notes, Verdict.INTACT if ended else Verdict.INTERRUPTED


def _check_frozen(batch_dir: Path, first: dict[str, Any]) -> None:
    for name, key in ((RECIPE_FILE, "recipe_sha256"), (STATION_FILE, "station_sha256")):
        try:
            actual = hashlib.sha256((batch_dir / name).read_bytes()).hexdigest()
        except OSError as exc:
            raise _TamperedError(f"{name}: cannot read ({exc.strerror or exc})") from None
        if actual != first[key]:
            raise _TamperedError(f"{name}: sha256 {actual[:12]}... differs from {key} "
                                 f"{first[key][:12]}... in record 0 (changed since start)")
    _check_maps(batch_dir, first)


def _check_maps(batch_dir: Path, first: dict[str, Any]) -> None:
    """The frozen instrument maps (``maps/<device>.toml``) are the ones record 0 names, by
    SHA-256, and no others (a batch recorded before maps were frozen has none)."""
    folder = batch_dir / MAPS_DIR
    try:
        present = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    except OSError as exc:
        raise _TamperedError(f"{MAPS_DIR}/: cannot read ({exc.strerror or exc})") from None
    recorded = first.get("maps")
    if recorded is None:
        if present:
            raise _TamperedError(f"{MAPS_DIR}/{min(present)}: record 0 names no maps "
                                 "(added since start)")
        return
    if not isinstance(recorded, dict):
        raise _TamperedError(f"{AUDIT_FILE}: record 0: maps is not a table", 0)
    for device, entry in recorded.items():
        name = f"{device}.toml"
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if Path(name).name != name or not (isinstance(digest, str)
                                           and _HEX64.fullmatch(digest)):
            raise _TamperedError(f"{AUDIT_FILE}: record 0: maps.{device[:40]} is not a map "
                                 "file's name and sha256", 0)
        try:
            actual = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        except FileNotFoundError:
            raise _TamperedError(f"{MAPS_DIR}/{name}: missing (deleted since start)") from None
        except OSError as exc:
            raise _TamperedError(f"{MAPS_DIR}/{name}: cannot read "
                                 f"({exc.strerror or exc})") from None
        if actual != digest:
            raise _TamperedError(f"{MAPS_DIR}/{name}: sha256 {actual[:12]}... differs from "
                                 f"record 0's {digest[:12]}... (changed since start)")
        present.discard(name)
    if present:
        raise _TamperedError(f"{MAPS_DIR}/{min(present)}: not named in record 0 (added "
                             "since start)")


def _check_summary(batch_dir: Path, records: list[dict[str, Any]],
                   warnings: list[str]) -> None:
    """summary.json points at the last record, which ends the batch, and matches it."""
    count = len(records)
    try:
        summary = read_summary(batch_dir / SUMMARY_FILE)
    except RecordError as exc:
        raise _TamperedError(str(exc)) from None
    claimed = summary["audit_records"]
    if claimed != count:
        raise _TamperedError(f"{SUMMARY_FILE}: audit_records is {claimed} but the chain has "
                             f"{count} (records dropped or added)", min(count, claimed))
    last = records[-1]
    if summary["audit_final_hash"] != last["hash"]:
        raise _TamperedError(f"{SUMMARY_FILE}: audit_final_hash does not match the hash of "
                             f"record {count - 1} (chain rebuilt or summary edited)", count - 1)
    if last["event"] != END_EVENT:
        raise _TamperedError(f"{AUDIT_FILE}: the chain ends with {last['event'][:40]!r} (record "
                             f"{count - 1}), not {END_EVENT!r}, yet {SUMMARY_FILE} points at it "
                             "(records dropped and the summary made to match)", count)
    recorded = last.get("summary_sha256")
    if recorded is None:
        warnings.append(f"{SUMMARY_FILE}: only audit_records and audit_final_hash are bound "
                        "to the chain (recorded before summary hashing)")
        return
    try:
        actual = summary_digest(summary)
    except (TypeError, ValueError):
        actual = ""
    if actual != recorded:
        raise _TamperedError(f"{SUMMARY_FILE}: its content does not match summary_sha256 in "
                             f"record {count - 1} ({END_EVENT!r}): a field was changed")


def _trace_fields(index: int, record: dict[str, Any]) -> tuple[str, int, int]:
    digest, size, rows = (record.get(k) for k in TRACE_FIELDS)
    if not (isinstance(digest, str) and _HEX64.fullmatch(digest) and type(size) is int
            and size > 0 and type(rows) is int and rows >= 0):
        raise _TamperedError(f"{AUDIT_FILE}: record {index}: {', '.join(TRACE_FIELDS)} are not a "
                             "sha256 hex digest, a positive and a non-negative integer", index)
    return digest, size, rows


def _trace_stop(records: Sequence[dict[str, Any]], after: int) -> int | None:
    """Index of the record saying the trace stopped (disk full), after record ``after``."""
    return next((i for i in range(after + 1, len(records))
                 if records[i]["event"] == _STOPPED_EVENT
                 and records[i].get("what") == _STOPPED_WHAT), None)


def _check_trace(batch_dir: Path, records: Sequence[dict[str, Any]], ended: bool,
                 warnings: list[str]) -> list[str]:
    """trace.csv against every record carrying a trace hash, oldest first.

    Rows after the last hash are not covered: a warning while the batch runs, or when the
    chain records that the trace stopped (a full disk) after that hash; tampering once
    ``batch_ended`` has covered the whole file.
    """
    marks = [(i, _trace_fields(i, r)) for i, r in enumerate(records)
             if any(k in r for k in TRACE_FIELDS)]
    path = batch_dir / TRACE_FILE
    if not marks:
        missing = "" if path.exists() else "missing; "
        warnings.append(f"{TRACE_FILE}: {missing}not checked (recorded before trace hashing)")
        return []
    last_index = marks[-1][0]
    stopped = _trace_stop(records, last_index)
    covers_all = ended and stopped is None
    if covers_all and last_index != len(records) - 1:
        raise _TamperedError(f"{AUDIT_FILE}: the {END_EVENT!r} record does not carry the "
                             f"trace hash (the last record that does is {last_index})",
                             len(records) - 1)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _TamperedError(f"{TRACE_FILE}: missing, but record {last_index} records its "
                             "hash (deleted)") from None
    except OSError as exc:
        raise _TamperedError(f"{TRACE_FILE}: cannot read ({exc.strerror or exc})") from None
    sha, pos, lines, covered_rows = hashlib.sha256(), 0, 0, 0
    for index, (digest, size, rows) in marks:
        if size < pos:
            raise _TamperedError(f"{AUDIT_FILE}: record {index}: trace_bytes {size} is less "
                                 f"than the {pos} recorded before it", index)
        if size > len(data):
            raise _TamperedError(f"{TRACE_FILE}: {len(data)} bytes, but record {index} "
                                 f"records its first {size} (rows deleted or the file cut)")
        sha.update(data[pos:size])
        lines += data.count(b"\n", pos, size)  # data row n is line n + 1, after the header
        if sha.hexdigest() != digest:
            where = "the header or rows" if pos == 0 else "rows"
            raise _TamperedError(f"{TRACE_FILE}: {where} {covered_rows + 1}-{rows} changed "
                                 f"(bytes {pos}-{size} no longer match trace_sha256 in "
                                 f"record {index})")
        if lines - 1 != rows:
            raise _TamperedError(f"{AUDIT_FILE}: record {index}: trace_rows is {rows} but "
                                 f"the {size} bytes it covers hold {lines - 1} rows", index)
        pos, covered_rows = size, rows
    tail = data[pos:]
    tail_rows = tail.count(b"\n")
    if tail and covers_all:
        raise _TamperedError(f"{TRACE_FILE}: {len(tail)} bytes ({tail_rows} rows) after the "
                             f"end that record {last_index} ({END_EVENT!r}) covers: added "
                             "after the batch ended")
    if tail:
        torn = len(tail) - (tail.rfind(b"\n") + 1)
        since = "" if stopped is None else f" (the trace stopped at record {stopped})"
        warnings.append(f"{TRACE_FILE}: {tail_rows} rows after the last checkpoint (record "
                        f"{last_index}) not yet covered by the audit"
                        + (f", and a torn last row of {torn} bytes" if torn else "") + since)
    return [f"{TRACE_FILE}: {lines - 1} rows {'match' if covers_all else 'covered'}"]


def _check_anchor(anchor_log: Path, batch_dir: Path, records: list[dict[str, Any]],
                  verdict: Verdict, warnings: list[str]) -> str:
    """The anchor log's last line for this batch names this chain. Raises ``OSError``."""
    batch = records[0].get("batch_id")
    batch = batch if isinstance(batch, str) and batch else batch_dir.name
    prefix = "rewritten chain does not match the anchor log"
    if verdict is Verdict.INTACT:
        ok, why = check_anchor(anchor_log, batch, records[-1]["hash"], len(records))
        if not ok:
            raise _TamperedError(f"{prefix}: {why}")
        return why
    anchor = find_anchor(anchor_log, batch)
    if anchor is not None:  # anchored as ended, but the folder's chain no longer ends
        raise _TamperedError(f"{prefix}: it anchors {anchor.records} records ending in "
                             f"{anchor.final_hash[:16]}... ({anchor.wall_utc}); the folder has "
                             f"{len(records)} and no end")
    warnings.append(f"batch {batch} is not in the anchor log {anchor_log} yet (a batch is "
                    "anchored when it ends)")
    return "not anchored yet"
