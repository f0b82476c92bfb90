"""A minimal valid run record (what the schema asks of one), for tests that write records by hand."""
from __future__ import annotations


def valid_record(id: str = "x1", **fields) -> dict:
    record = {"id": id, "domain": "d", "dataset": "s", "model": "m", "method": "bp", "scale": "small", "seed": 0,
              "status": "ok", "primary_metric": "acc", "higher_is_better": True,
              "metrics": {"val": {"acc": 0.5}, "test": {"acc": 0.5}}}
    record.update(fields)
    return record
