"""`dfabench records rerun FOLDER`: make again, from this checkout, the records no commit of it reproduces.

A record whose provenance says ``dirty: true`` was made from uncommitted code: no commit reproduces it.
A record made at a commit that is not in the history of the dfabench checkout (a branch's commit lost
in a rebase) names code nobody can check out from here. This re-runs each such record from its
own recorded configuration (the path `verify` takes: same id, same seed, its recorded thread count) and
writes the new record over it, so every table that read the old one reads the new one. It refuses to
start from a modified checkout (the new records would be no better), and names, without touching them,
the records whose configuration no longer gives their id.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError


def from_a_modified_tree(record: dict[str, Any]) -> bool:
    """No commit reproduces it: made from a modified checkout, or from none (``dirty`` not false)."""
    return (record.get("provenance") or {}).get("dirty") is not False


def dfabench_checkout() -> Path:
    """The checkout this dfabench runs from (its records name that checkout's commits)."""
    import dfabench

    return Path(dfabench.__file__).resolve().parent.parent


def history_of(root: Path | None = None) -> frozenset[str] | None:
    """Every commit reachable from HEAD in the git checkout at ``root`` (default: ``dfabench_checkout()``);
    None when that cannot be known (an installed package, a copy without git whose commit comes from
    ``DFABENCH_GIT_COMMIT``, a shallow clone whose history is cut off)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30,
                              check=True).stdout
    if os.environ.get("DFABENCH_GIT_COMMIT"):
        return None  # provenance.git_state: the records name the commit of a checkout elsewhere
    root = dfabench_checkout() if root is None else root
    try:
        if git("rev-parse", "--show-toplevel").strip() != str(Path(root).resolve()):
            return None  # not a checkout of its own (an installed package inside some other repository)
        if git("rev-parse", "--is-shallow-repository").strip() != "false":
            return None
        return frozenset(git("rev-list", "HEAD").split())
    except (OSError, subprocess.SubprocessError):
        return None


def why_not_reproducible(record: dict[str, Any], history: frozenset[str] | None) -> str | None:
    """Why no commit in ``history`` (``history_of()``; None: not checked) makes ``record`` again, or None."""
    if from_a_modified_tree(record):
        return "made from a modified working tree (or no git checkout): no commit reproduces it"
    commit = (record.get("provenance") or {}).get("commit") or ""
    if history is not None and commit not in history and not any(c.startswith(commit) for c in history):
        return f"made at commit {commit[:12]}, which is not in this checkout's history (a rebased branch's?)"
    return None


def records_to_remake(records: list[dict[str, Any]], history: frozenset[str] | None) -> list[dict[str, Any]]:
    """The records ``why_not_reproducible`` names, cheapest (by recorded wall time) first."""
    todo = [r for r in records if why_not_reproducible(r, history)]
    return sorted(todo, key=lambda r: (float((r.get("timings") or {}).get("wall_s") or 0.0), r["id"]))


def results_folders(folder: Path) -> list[Path]:
    """``folder`` and every results folder below it (one with a ``runs/``): a tuning sweep keeps one per trial."""
    return sorted({runs.parent for runs in Path(folder).rglob("runs") if runs.is_dir()})


def rerun_command(folder: Path, device: str = "cpu", dry_run: bool = False) -> int:
    """Re-run the records of ``folder`` and of every results folder below it that no commit in this
    checkout's history reproduces (``why_not_reproducible``), in place; 0 when every one was made again
    and is ok."""
    from tqdm.auto import tqdm

    from ..harness.provenance import git_state
    from ..harness.store import iter_records, write_record
    from .verify import planned_from, run_as_recorded

    folders = results_folders(folder)
    if not folders:
        raise ConfigError(f"no run records under {folder} (no runs/ folder)")
    history = history_of()
    todo = [(results, r) for results in folders for r in records_to_remake(list(iter_records(results)), history)]
    hours = sum(float((r.get("timings") or {}).get("wall_s") or 0.0) for _, r in todo) / 3600
    print(f"records rerun: {len(todo)} record(s) in {len(folders)} results folder(s) of {folder} were made from "
          f"a modified tree or at a commit outside this checkout's history (recorded wall time {hours:.2f} h)",
          file=sys.stderr)
    if dry_run or not todo:
        for results, r in todo:
            print(f"{r['id']} {r['domain']}/{r['dataset']}/{r['model']} {r['method']} seed {r['seed']} ({results})")
        return 0
    state = git_state()
    if not state.get("commit") or state.get("dirty"):
        raise ConfigError("this checkout is modified (or not a git checkout): commit first, so that a commit "
                          "reproduces the new records")
    left = []
    for results, record in tqdm(todo, desc="rerun", unit="run"):
        try:
            run = planned_from(record)
        except ConfigError as err:
            left.append(f"{record['id']}: {err}")
            continue
        new = run_as_recorded(run, record, results, device)
        write_record(results, new)
        metric = record.get("primary_metric")
        old_value, new_value = ((x.get("metrics") or {}).get("test", {}).get(metric) for x in (record, new))
        print(f"{record['id']} {record['domain']}/{record['dataset']}/{record['model']} {record['method']} "
              f"seed {record['seed']}: {new['status']}, {metric} {old_value} -> {new_value}", flush=True)
        if new["status"] != "ok":
            left.append(f"{record['id']}: the new run is {new['status']}")
    for line in left:
        print(f"not made again: {line}", file=sys.stderr)
    return 1 if left else 0
