"""Run records on disk: one JSON file per run under ``<results>/runs/<id>.json``, written atomically.

A record is written to a temporary file in the same directory and renamed over the final name, so
a run killed at any moment leaves either no record or a whole one; never half a file.
"""
from __future__ import annotations

import json
import math
import os
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
    return json.loads(Path(path).read_text())


def is_finished(results: Path, run_id: str) -> bool:
    path = record_path(results, run_id)
    if not path.exists():
        return False
    try:
        return read_record(path).get("status") in FINISHED
    except (json.JSONDecodeError, OSError):
        return False


def iter_records(results: Path) -> Iterator[dict[str, Any]]:
    directory = runs_dir(results)
    if not directory.exists():
        return
    for path in sorted(directory.glob("*.json")):
        if path.name.startswith(".tmp-"):
            continue
        yield read_record(path)
