"""TraceWriter: exact header, cell formatting, CSV round trip, buffering, resume."""

from __future__ import annotations

import csv
import enum
import hashlib
import io
import math
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.records.audit import RecordError
from controller.records.trace import TraceWriter, _cell

COLUMNS = ["elapsed_s", "wall_utc", "stage", "step", "state", "setpoint_c", "furnace_c",
           "output_pct", "mass_g", "o2_ppm", "flow_Ar_sccm", "flow_Ar_setpoint_sccm"]


class State(enum.StrEnum):
    RUNNING = "running"


def read_rows(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def row(**overrides: object) -> list[object]:
    values: dict[str, object] = {
        "elapsed_s": 1.0, "wall_utc": "2026-11-24T21:18:40.000Z", "stage": "preheat",
        "step": "ramp", "state": "running", "setpoint_c": 600.0, "furnace_c": 598.25,
        "output_pct": 40.0, "mass_g": 1.23456789, "o2_ppm": None, "flow_Ar_sccm": 200.0,
        "flow_Ar_setpoint_sccm": 200.0,
    }
    values.update(overrides)
    return [values[c] for c in COLUMNS]


def test_header_is_exactly_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    TraceWriter(path, COLUMNS).close()
    assert path.read_bytes() == (",".join(COLUMNS) + "\n").encode("ascii")  # no BOM


def test_cells_are_formatted_compactly(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    with TraceWriter(path, COLUMNS) as trace:
        trace.write_row(row())
        trace.write_row(row(elapsed_s=1e-7, furnace_c=float("nan"), setpoint_c=1e20,
                            output_pct=float("inf"), mass_g=None, o2_ppm=3,
                            flow_Ar_sccm=-float("inf"), state=State.RUNNING,
                            wall_utc=datetime(2026, 11, 24, 22, 18, 40,
                                              tzinfo=timezone(timedelta(hours=1))),
                            flow_Ar_setpoint_sccm=True))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[1] == ("1.000,2026-11-24T21:18:40.000Z,preheat,ramp,running,600.000,598.250,"
                        "40.000,1.23457,,200.000,200.000")
    assert lines[2] == ("0.000,2026-11-24T21:18:40.000Z,preheat,ramp,running,"
                        "100000000000000000000.000,,,,3,,1")


def test_text_needing_quotes_survives_a_csv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    with TraceWriter(path, COLUMNS) as trace:
        trace.write_row(row(stage='pre-ox, "air"', step="two\nlines\r\nhere", state="é"))
    assert len(path.read_bytes().splitlines()) == 2  # one line per row, always
    assert read_rows(path)[1][2:5] == ['pre-ox, "air"', "two lines here", "é"]


def test_custom_decimals(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    with TraceWriter(path, ["a_s", "b_c"], decimals={"a_s": 1, "b_c": 0}) as trace:
        trace.write_row([1.25, 7.6])
    assert read_rows(path)[1] == ["1.2", "8"]
    with pytest.raises(ValueError, match="unknown columns"):
        TraceWriter(tmp_path / "other.csv", ["a_s"], decimals={"b_c": 1})


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(
    st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True, width=64)),
    st.one_of(st.none(), st.integers(-10**6, 10**6)),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
), max_size=20))
def test_rows_parse_back_with_the_csv_module(tmp_path: Path,
                                             rows: list[tuple[float | None, int | None, str]]
                                             ) -> None:
    path = tmp_path / "prop.csv"
    path.unlink(missing_ok=True)
    with TraceWriter(path, ["x_c", "n", "label"]) as trace:
        for values in rows:
            trace.write_row(values)
    parsed = read_rows(path)
    assert parsed[0] == ["x_c", "n", "label"]
    assert len(parsed) == len(rows) + 1
    for (x, n, label), cells in zip(rows, parsed[1:], strict=True):
        if x is None or not math.isfinite(x):
            assert cells[0] == ""
        else:
            assert "e" not in cells[0].lower()
            assert float(cells[0]) == pytest.approx(x, abs=0.0005 + 1e-12 * abs(x))
        assert cells[1] == ("" if n is None else str(n))
        expected = label.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")
        assert cells[2] == expected


def test_wrong_number_of_values_is_refused(tmp_path: Path) -> None:
    with TraceWriter(tmp_path / "trace.csv", COLUMNS) as trace, \
            pytest.raises(ValueError, match="11 values for 12 columns"):
        trace.write_row(row()[:-1])


@pytest.mark.parametrize("columns", [[], ["a", "a"], ["a", ""], ["a\nb"]])
def test_bad_columns_are_refused(tmp_path: Path, columns: list[str]) -> None:
    with pytest.raises(ValueError, match="columns"):
        TraceWriter(tmp_path / "trace.csv", columns)
    assert not (tmp_path / "trace.csv").exists()


def test_rows_are_buffered_until_flush_which_fsyncs(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "trace.csv"
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_size)
        real_fsync(fd)

    with TraceWriter(path, COLUMNS) as trace:
        header_size = path.stat().st_size
        monkeypatch.setattr(os, "fsync", counting_fsync)
        for i in range(10):
            trace.write_row(row(elapsed_s=float(i)))
        assert path.stat().st_size == header_size  # nothing written per row
        trace.flush()
        assert synced == [path.stat().st_size]
        assert len(read_rows(path)) == 11
        assert trace.row_count == 10


def test_a_full_buffer_goes_to_the_os_without_waiting(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    with TraceWriter(path, COLUMNS, max_pending_rows=4) as trace:
        for i in range(9):
            trace.write_row(row(elapsed_s=float(i)))
        assert len(read_rows(path)) == 1 + 8
    assert len(read_rows(path)) == 1 + 9


def test_never_overwrites_and_refuses_after_close(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    trace = TraceWriter(path, COLUMNS)
    trace.close()
    trace.close()
    with pytest.raises(RecordError, match="closed"):
        trace.write_row(row())
    with pytest.raises(FileExistsError):
        TraceWriter(path, ["other"])
    assert read_rows(path) == [COLUMNS]


def test_failed_write_closes_the_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trace = TraceWriter(tmp_path / "trace.csv", COLUMNS)
    trace.write_row(row())

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space"):
        trace.flush()
    with pytest.raises(RecordError, match="closed after"):
        trace.write_row(row())
    trace.close()


def test_open_existing_appends_after_a_torn_row(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    with TraceWriter(path, COLUMNS) as trace:
        trace.write_row(row(elapsed_s=1.0))
        trace.write_row(row(elapsed_s=2.0))
    good = path.read_bytes()
    path.write_bytes(good + b"3.000,2026-11-24T21:")  # crash mid-row
    with TraceWriter.open_existing(path, COLUMNS) as trace:
        assert trace.torn_tail == b"3.000,2026-11-24T21:"
        assert trace.row_count == 2
        trace.write_row(row(elapsed_s=3.0, wall_utc=datetime(2026, 11, 24, tzinfo=UTC)))
    rows = read_rows(path)
    assert rows[0] == COLUMNS
    assert [r[0] for r in rows[1:]] == ["1.000", "2.000", "3.000"]
    assert rows[3][1] == "2026-11-24T00:00:00.000Z"


def test_open_existing_checks_the_header(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    TraceWriter(path, COLUMNS).close()
    before = path.read_bytes()
    with pytest.raises(RecordError, match="differs from the columns"):
        TraceWriter.open_existing(path, [*COLUMNS, "o2_ppm_2"])
    assert path.read_bytes() == before
    path.write_bytes(b"elapsed_s,wall")
    with pytest.raises(RecordError, match="no complete header"):
        TraceWriter.open_existing(path, COLUMNS)


def test_excel_style_reader_sees_numbers(tmp_path: Path) -> None:
    """Origin/Excel read plain CSV; the stdlib sniffer agrees on the dialect and header."""
    path = tmp_path / "trace.csv"
    with TraceWriter(path, COLUMNS) as trace:
        for i in range(5):
            trace.write_row(row(elapsed_s=float(i)))
    sample = path.read_text(encoding="utf-8")
    dialect = csv.Sniffer().sniff(sample)
    assert dialect.delimiter == ","
    assert csv.Sniffer().has_header(sample)
    table = list(csv.DictReader(io.StringIO(sample)))
    assert [float(r["elapsed_s"]) for r in table] == [0.0, 1.0, 2.0, 3.0, 4.0]


# --- the running hash (what the audit records at checkpoints and at the end) ------------------


def file_digest(path: Path) -> tuple[str, int, int]:
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), len(data), data.count(b"\n") - 1


def test_running_hash_covers_exactly_the_bytes_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    with TraceWriter(path, COLUMNS) as trace:
        header = (",".join(COLUMNS) + "\n").encode()
        assert (trace.sha256_hex, trace.byte_count) == (hashlib.sha256(header).hexdigest(),
                                                         len(header))
        trace.write_row(row(elapsed_s=1.0))
        assert trace.byte_count == len(header)  # a buffered row is not in the file yet
        first = trace.digest()  # flushes, then describes the file
        assert (first.sha256_hex, first.byte_count, first.row_count) == file_digest(path)
        for i in range(5):
            trace.write_row(row(elapsed_s=2.0 + i, stage="préchauffage, Ar"))
        second = trace.digest()
        assert (second.sha256_hex, second.byte_count, second.row_count) == file_digest(path)
        assert second.row_count == trace.row_count == 6
    assert trace.digest() == second  # closed: no I/O, the same description
    assert second.as_fields() == {"trace_sha256": second.sha256_hex,
                                  "trace_bytes": second.byte_count, "trace_rows": 6}


def test_running_hash_survives_resume_after_a_torn_row(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    with TraceWriter(path, COLUMNS) as trace:
        trace.write_row(row(elapsed_s=1.0))
        checkpoint = trace.digest()
        trace.write_row(row(elapsed_s=2.0))
    path.write_bytes(path.read_bytes() + b"3.000,2026-11-24T21:")  # crash mid-row
    with TraceWriter.open_existing(path, COLUMNS) as trace:
        resumed = trace.digest()
        assert (resumed.sha256_hex, resumed.byte_count, resumed.row_count) == file_digest(path)
        trace.write_row(row(elapsed_s=3.0))
        final = trace.digest()
    data = path.read_bytes()
    assert final.byte_count == len(data)
    assert final.sha256_hex == hashlib.sha256(data).hexdigest()
    # what was recorded before the crash still describes the start of the file
    assert hashlib.sha256(data[:checkpoint.byte_count]).hexdigest() == checkpoint.sha256_hex


class _DiskFullFile:
    """A raw file that takes ``room`` more bytes, then fails as a full disk does."""

    def __init__(self, real: Any, room: int) -> None:
        self.real, self.room, self.name = real, room, real.name

    def write(self, data: Any) -> int:
        if self.room == 0:
            raise OSError(28, "No space left on device")
        n = self.real.write(bytes(data[:self.room]))
        self.room -= n
        return int(n)

    def fileno(self) -> int:
        return int(self.real.fileno())

    def close(self) -> None:
        self.real.close()


@pytest.mark.parametrize("room", [0, 10, 150, 1000])
def test_a_write_cut_short_by_a_full_disk_leaves_file_and_hash_agreeing(
        tmp_path: Path, room: int) -> None:
    path = tmp_path / "trace.csv"
    trace = TraceWriter(path, COLUMNS)
    trace.write_row(row(elapsed_s=0.0))
    trace.flush()
    trace._file = _DiskFullFile(trace._file, room)
    for i in range(10):
        trace.write_row(row(elapsed_s=1.0 + i))
    with pytest.raises(OSError, match="No space"):
        trace.flush()
    digest = trace.digest()  # closed by the failure: describes what the file holds
    assert (digest.sha256_hex, digest.byte_count, digest.row_count) == file_digest(path)
    assert path.read_bytes().endswith(b"\n")  # the partial row was cut
    with pytest.raises(RecordError, match="closed after"):
        trace.write_row(row())


# ---- the precompiled row format writes exactly what the cell-by-cell path writes

_CELL_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6),
    st.booleans(), st.none(), st.sampled_from(["", "wash", "a,b", 'say "x"', "nan", "li\nne",
                                               "stale:o2;pv_spike", "infinite"]),
    st.just(State.RUNNING))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200)
@given(st.lists(st.lists(_CELL_VALUES, min_size=4, max_size=4), min_size=1, max_size=6))
def test_the_precompiled_format_writes_what_the_cells_would(
        tmp_path_factory: pytest.TempPathFactory, rows: list[list[Any]]) -> None:
    folder = tmp_path_factory.mktemp("fast")
    columns = ["elapsed_s", "mass_g", "stage", "note"]
    with TraceWriter(folder / "t.csv", columns) as tw:
        specs = [".3f", ".5f", ".3f", ".3f"]
        for row in rows:
            tw.write_row(row)
            tw.write_row(row)  # the second time through the layout's compiled format
    want = "".join(",".join(_cell(v, s) for v, s in zip(row, specs, strict=True)) + "\n"
                   for row in rows for _ in (1, 2))
    assert (folder / "t.csv").read_text(encoding="utf-8") == ",".join(columns) + "\n" + want
