"""Run records on disk: one JSON file per run under ``<results>/runs/<id>.json``, written atomically.

A record is written to a temporary file in the same directory and renamed over the final name, so
a run killed at any moment leaves either no record or a whole one; never half a file.

Records are read defensively: every reader goes through ``read_valid`` / ``iter_records``, which check
a record against ``schema.RunRecord``. One that is not JSON, not UTF-8, wrongly typed, a stub, or
stored under another run's name is skipped with one warning line naming its file (once per process),
and counts as not done, so the next ``run`` replaces it.
"""
from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

FINISHED = ("ok", "diverged", "timeout")  # a re-run skips these; 'error' runs are retried


def runs_dir(results: Path) -> Path:
    return Path(results) / "runs"


def record_path(results: Path, run_id: str) -> Path:
    return runs_dir(results) / f"{run_id}.json"


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: store them as strings so records stay standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_record(results: Path, record: dict[str, Any]) -> Path:
    final = record_path(results, record["id"])
    final.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_clean(record), indent=1, sort_keys=True)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return final


def read_record(path: Path) -> dict[str, Any]:
    """The raw JSON of a record file, unchecked (readers use ``read_valid``)."""
    return json.loads(Path(path).read_text())


_warned: set[tuple[str, int]] = set()


def warn_invalid(path: Path, why: str) -> None:
    """One stderr line per bad file and version of it, however many readers meet it."""
    try:
        key = (str(Path(path).resolve()), Path(path).stat().st_mtime_ns)
    except OSError:
        key = (str(path), 0)
    if key not in _warned:
        _warned.add(key)
        print(f"dfabench: warning: skipping {path}: {why}", file=sys.stderr)


def invalid_reason(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(record, None) for a valid record file, else (None, why not)."""
    from .schema import problem

    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        return None, f"cannot read it ({err.strerror})"
    if not raw.strip():
        return None, "empty file"
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except json.JSONDecodeError as err:
        return None, f"not JSON ({err.msg} at line {err.lineno})"
    why = problem(record)
    if why is None and record["id"] != Path(path).stem:
        why = f"its id {record['id']!r} is not its file name"
    return (None, f"not a valid run record ({why})") if why else (record, None)


def read_valid(path: Path, warn: bool = True) -> dict[str, Any] | None:
    """The record at ``path`` if it is a valid one; else None, with a warning naming the file."""
    record, why = invalid_reason(path)
    if why and warn:
        warn_invalid(path, why)
    return record


def is_finished(results: Path, run_id: str) -> bool:
    path = record_path(results, run_id)
    if not path.exists():
        return False
    record = read_valid(path)
    return record is not None and record["status"] in FINISHED


def iter_records(results: Path) -> Iterator[dict[str, Any]]:
    """Every valid record under ``results/runs``; invalid ones are skipped with a warning."""
    directory = runs_dir(results)
    if not directory.exists():
        return
    for path in sorted(directory.glob("*.json")):
        if path.name.startswith(".tmp-"):
            continue
        record = read_valid(path)
        if record is not None:
            yield record
