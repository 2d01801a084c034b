"""`tuigpt export-metrics RUN --format csv|parquet|jsonl [--table scalars|text] [--out FILE]`: a run's history as a
table pandas reads as it is (``pd.read_csv``, ``pd.read_parquet``, ``pd.read_json(lines=True)``); the tables are
described in :mod:`tuigpt.run.metrics_table`. Nothing that exists is overwritten; ``--out -`` writes to stdout."""

from __future__ import annotations

import csv
import io
import json
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any, Iterator

from tuigpt.cli.args import Parser
from tuigpt.run.errors import UserError
from tuigpt.run.exits import EXIT_OK
from tuigpt.run.files import atomic_file
from tuigpt.run.metrics_table import TABLES, TEXT_COLUMNS, scalar_columns, scalar_rows, text_rows
from tuigpt.run.rundir import METRICS_FILE

FORMATS = ("csv", "parquet", "jsonl")
PARQUET_ROWS = 65_536  # rows a Parquet row group holds (the writer's memory)


def main(args: list[str], out: IO[str] | None = None) -> int:
    parser = Parser(prog="tuigpt export-metrics", description="Write a run's metrics as a table pandas reads.")
    parser.add_argument("run", help="a run folder (checkpoints/<run_name>) or its metrics.jsonl")
    parser.add_argument("--format", required=True, choices=FORMATS, help="csv, parquet (needs pyarrow) or jsonl")
    parser.add_argument("--table", choices=TABLES, default="scalars",
                        help="scalars: a row per iteration, a column per series (default); text: samples and events")
    parser.add_argument("--out", default=None, help="the file to write (default: RUN/metrics-TABLE.FORMAT; - for stdout)")
    ns = parser.parse_args(args)
    path = _metrics(Path(ns.run))
    columns = scalar_columns(path) if ns.table == "scalars" else list(TEXT_COLUMNS)
    rows = scalar_rows(path) if ns.table == "scalars" else text_rows(path)
    target = ns.out or str(path.parent / f"metrics-{ns.table}.{ns.format}")
    if target == "-":
        if ns.format == "parquet":
            raise UserError("--format parquet is binary: give --out FILE")
        _write_text(out or sys.stdout, ns.format, columns, rows)
        return EXIT_OK
    dest = Path(target)
    if dest.exists():
        raise UserError(f"{dest} already exists: give another --out FILE, or delete it")
    if not dest.parent.is_dir():
        raise UserError(f"{dest.parent}/ does not exist: give --out a file in an existing folder")
    try:
        with atomic_file(dest, "wb") as f:
            if ns.format == "parquet":
                n = _write_parquet(f, columns, rows)
            else:
                text = io.TextIOWrapper(f, encoding="utf-8", newline="")
                n = _write_text(text, ns.format, columns, rows)
                text.detach()  # the file stays open for atomic_file to sync and rename
    except OSError as exc:
        raise UserError(f"cannot write {dest} ({exc.strerror or exc}): free disk space or pick another --out") from None
    print(f"wrote {dest}: {n:,} rows × {len(columns)} columns ({ns.table}); in pandas: {_reader(ns.format, dest)}",
          file=out or sys.stdout)
    return EXIT_OK


def _metrics(run: Path) -> Path:
    path = run if run.name == METRICS_FILE or run.suffix == ".jsonl" else run / METRICS_FILE
    if not path.is_file():
        raise UserError(f"{path} does not exist: give a run folder (see `tuigpt runs`) or a metrics.jsonl")
    return path


def _reader(fmt: str, path: Path) -> str:
    """How the pandas here reads it back exactly: its JSON reader rounds the last digit unless asked not to, and
    its CSV reader before 3.1 needs asking too (:func:`_csv_exact`)."""
    extra = {"csv": _csv_exact(), "parquet": "", "jsonl": ", lines=True, precise_float=True"}[fmt]
    return f"pd.read_{'json' if fmt == 'jsonl' else fmt}({str(path)!r}{extra})"


def _csv_exact() -> str:
    """The argument pandas before 3.1 needs to read a CSV's floats exactly (3.0.6 read 4.1808319091796875 as
    4.180831909179688); 3.1 reads them exactly by default and deprecates the argument. Without pandas here, the
    one a user installs now is 3.1 or later."""
    try:
        major, minor = (int(part) for part in version("pandas").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return ""
    return ", float_precision='round_trip'" if (major, minor) < (3, 1) else ""


def _write_text(f: IO[str], fmt: str, columns: list[str], rows: Iterator[dict[str, Any]]) -> int:
    n = 0
    if fmt == "csv":
        writer = csv.DictWriter(f, columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)  # floats as Python writes them: the shortest text that reads back exactly
            n += 1
    else:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
            n += 1
    f.flush()
    return n


def _write_parquet(f: IO[bytes], columns: list[str], rows: Iterator[dict[str, Any]]) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError("--format parquet needs pyarrow: pip install 'tuigpt[parquet]' (or pip install pyarrow); "
                        "csv and jsonl need nothing") from None
    text = set(TEXT_COLUMNS) - {"iter", "time"}
    schema = pa.schema([(c, pa.int64() if c == "iter" else pa.string() if c in text else pa.float64())
                        for c in columns])
    n = 0
    with pq.ParquetWriter(f, schema) as writer:
        while batch := [row for _, row in zip(range(PARQUET_ROWS), rows)]:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            n += len(batch)
    return n
