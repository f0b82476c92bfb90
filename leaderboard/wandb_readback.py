"""Read an offline W&B run file (``run-*.wandb``) back: its history rows, final summary and tables.

The file is W&B's LevelDB-log-style stream of protobuf ``Record``s: a 7-byte file header, then 32 KiB
blocks of chunks, each with a 7-byte header (crc32 4, length 2, type 1: full/first/middle/last).
Used by the tests to check that what was logged equals the records (``wandb.Api`` needs a server).
"""
from __future__ import annotations

import json
import struct
import time
from pathlib import Path

_BLOCK = 32 * 1024
_FILE_HEADER = 7
_CHUNK_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _payloads(data: bytes):
    pos, pending = _FILE_HEADER, b""
    while pos + _CHUNK_HEADER <= len(data):
        left = _BLOCK - (pos % _BLOCK)
        if left < _CHUNK_HEADER:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + _CHUNK_HEADER])
        chunk = data[pos + _CHUNK_HEADER:pos + _CHUNK_HEADER + length]
        pos += _CHUNK_HEADER + length
        if kind == 0 and length == 0:
            continue
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk
            pending = b""


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def _records(run_dir: Path, wait_s: float):
    """The run file's records, once its closing ``exit`` record is there: W&B's service process may
    still be writing the file for a moment after ``run.finish()`` returns."""
    from wandb.proto import wandb_internal_pb2 as pb

    deadline = time.monotonic() + wait_s
    while True:
        paths = list(Path(run_dir).glob("*.wandb"))
        records = []
        for payload in _payloads(paths[0].read_bytes()) if paths else []:
            rec = pb.Record()
            rec.ParseFromString(payload)
            records.append(rec)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def read_run(run_dir: Path, wait_s: float = 30.0) -> dict:
    """{'config': {...}, 'history': [row, ...], 'summary': {...}} of one offline run directory."""
    out: dict = {"config": {}, "history": [], "summary": {}}
    for rec in _records(Path(run_dir), wait_s):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            out["history"].append({_key(i): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            out["summary"].update({_key(i): json.loads(i.value_json) for i in rec.summary.update})
        elif kind in ("run", "config"):
            items = rec.run.config.update if kind == "run" else rec.config.update
            out["config"].update({_key(i): json.loads(i.value_json) for i in items})
    return out


def read_tables(run_dir: Path, wait_s: float = 30.0) -> dict:
    """{key: pandas.DataFrame} of every ``wandb.Table`` the run logged: the history holds a reference
    (``KEY/_type`` = 'table-file', ``KEY/path``) to the table's JSON file under the run's ``files/``."""
    import pandas as pd

    out = {}
    for row in read_run(run_dir, wait_s)["history"]:
        for key, value in row.items():
            if key.endswith("/_type") and value == "table-file":
                name = key[:-len("/_type")]
                table = json.loads((Path(run_dir) / "files" / row[f"{name}/path"]).read_text())
                out[name] = pd.DataFrame(table["data"], columns=table["columns"])
    return out
