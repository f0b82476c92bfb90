"""What `dfabench verify` found about a results folder (``<results>/verification.json``), per record.

The file names the records it re-ran and whether each one's metrics agreed with the recorded ones::

    {"verified_at": ISO date, "sample": N, "seed": S, "tolerance": {"rel": x}, "environment": {...},
     "records": {"<record id>": {"agree": bool, "identical": bool, "max_rel_diff": float, "metrics": {...}}}}

The leaderboard only reads it: an entry (one method in one cell) is *verified* when at least one of its
records was re-run and every re-run one agreed, *disputed* when one disagreed, and unmarked otherwise.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from dfabench.hparams import ConfigError

FILE = "verification.json"


@dataclass(frozen=True)
class Check:
    """One record's re-run."""

    agree: bool
    verified_at: str
    source: Path  # the verification.json it came from


@dataclass
class Verification:
    checks: dict[str, Check] = field(default_factory=dict)  # record id -> its re-run
    files: list[dict] = field(default_factory=list)  # per file read: path, verified_at, rerun, tolerance

    def mark(self, record_ids: Iterable[str]) -> dict:
        """The mark of an entry made of these records: ``status`` is 'verified', 'disputed' or ''."""
        ids = list(record_ids)
        done = [self.checks[i] for i in ids if i in self.checks]
        if not done:
            return {"status": "", "rerun": 0, "records": len(ids), "verified_at": "", "title": "not verified"}
        agree = all(c.agree for c in done)
        when = max(c.verified_at for c in done)[:10]
        failed = sum(not c.agree for c in done)
        title = (f"verified {when}: {len(done)} of {len(ids)} runs re-run, all agree" if agree else
                 f"disputed {when}: {failed} of {len(done)} re-run runs disagree with their record")
        return {"status": "verified" if agree else "disputed", "rerun": len(done), "records": len(ids),
                "verified_at": when, "title": title}


def load_verification(folders: Iterable[Path]) -> Verification:
    """The re-runs every results folder's verification.json holds (folders without one add nothing). A
    file that is not the shape `dfabench verify` writes is a ConfigError naming it."""
    out = Verification()
    for folder in folders:
        path = Path(folder) / FILE
        if not path.exists():
            continue
        try:
            data = json.loads(path.read_text())
            when = str(data["verified_at"])
            records = data["records"]
            checks = {str(rid): Check(bool(entry["agree"]), when, path) for rid, entry in records.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise ConfigError(f"{path}: not a verification file written by `dfabench verify` ({err!r})") from err
        out.checks.update(checks)
        out.files.append({"path": str(path), "verified_at": when, "rerun": len(checks),
                          "tolerance": data.get("tolerance") or {}})
    return out
