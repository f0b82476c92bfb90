"""`dfabench verify RESULTS`: re-run a sample of a results folder's records from their own recorded
configuration and say, per record, whether the metrics agree.

Each chosen record (status ``ok``) is planned again from what it records: domain, dataset, model,
method (an outside method from its ``method_origin``), scale, seed and hyper-parameters, with the
thread count of its recorded device. The configuration must give the record's own id (an edited
hyper-parameter does not). The run goes into a temporary results folder; RESULTS' runs are never
touched. Compared: every test metric and every metric of the best validation evaluation (not the
epoch it happened at).

* **identical**: every compared value is bit for bit the recorded one;
* **agree**: identical when the environment matches the record's provenance (same commit, clean
  checkout, same python/torch/numpy/dfabench versions, same device description): the suite is
  deterministic there, so any difference is a disagreement. Otherwise each value must be within the
  record's **cell tolerance**: ``BAND`` times the seed spread (standard deviation over its seeds, ddof 1)
  of that metric among the records of the same cell, method, scale and configuration in RESULTS, in the
  metric's units. On another processor a run that diverges is a new draw from the seed distribution, and
  the difference of two draws has sqrt(2) times the seed spread: two draws of one cell lie more than
  ``BAND`` = 2.576 * sqrt(2) spreads apart in 1 pair of 100, so a re-run beyond it is not the same
  result. (A one-spread rule, the first one, flags 48 pairs of 100: it called 2 of 8 re-runs of records
  made on another processor disagreements, though the same commit here gives the re-run's numbers;
  docs/records.md.)
  With fewer than two seeds, the largest spread of the cell's other methods at that scale; with none,
  ``NO_SPREAD_REL`` relative (re-runs on other machines have come back within 1e-6).

``--sample N`` is stratified: domains take turns, and within a domain its methods take turns, so any
N at least the number of domains covers every domain. The outcome is merged into
``RESULTS/verification.json`` (records verified before and not now keep their entry; the top-level
fields describe this verification). Exit 1 when any record disagrees.
"""
from __future__ import annotations

import json
import math
import random
import re
from collections import Counter
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import ConfigError

NO_SPREAD_REL = 1e-6  # a record whose cell has no seed spread: re-runs elsewhere agreed within 1e-6
BAND = 2.576 * math.sqrt(2)  # spreads: two draws of one cell differ by more in 1 pair of 100 (module doc)
FILE = "verification.json"
# A record without "cpu" (written before it was recorded) never shares an environment: its processor is unknown.
ENVIRONMENT_KEYS = ("commit", "dirty", "versions", "device", "cpu")


def candidates(records: list[dict], domain: str | None, max_seconds: float | None) -> tuple[list[dict], Counter]:
    """The records a verification may pick, sorted by id, and the ok ones that cannot be re-run here
    by reason (user data, whose path a record does not keep; a task whose libraries are missing)."""
    from ..catalog import specs, unavailable_reason

    chosen, unrunnable = [], Counter()
    for record in sorted(records, key=lambda r: r["id"]):
        if record["status"] != "ok" or domain not in (None, record["domain"]):
            continue
        if max_seconds is not None and not (record.get("timings", {}).get("wall_s") or math.inf) <= max_seconds:
            continue
        spec = specs().get(record["domain"])
        why = ("user data" if record.get("data") is not None else "unknown domain" if spec is None
               else unavailable_reason(spec) or _code_missing(record.get("method_origin")))
        if why:
            unrunnable[f"{record['domain']}: {why}"] += 1
            continue
        chosen.append(record)
    return chosen, unrunnable


def _config(record: dict) -> tuple:
    return (record["domain"], record["dataset"], record["model"], record["scale"],
            json.dumps(record.get("overrides") or {}, sort_keys=True), record.get("data"))


def cell_tolerance(record: dict, records: list[dict]) -> tuple[dict[str, float], str]:
    """Per compared metric, ``BAND`` times the seed spread of the record's cell and method (see the
    module's doc), and where it came from."""
    import statistics

    same = [r for r in records if r["status"] == "ok" and _config(r) == _config(record)]

    def spread(group: list[dict]) -> dict[str, float]:
        values: dict[str, list[float]] = {}
        for r in group:
            for name, value in compared(r).items():
                if math.isfinite(_number(value)):
                    values.setdefault(name, []).append(_number(value))
        return {k: BAND * statistics.stdev(v) for k, v in values.items() if len(v) > 1}

    own = [r for r in same if r["method"] == record["method"]]
    if len({r["seed"] for r in own}) > 1:
        return spread(own), f"{BAND:.2f} x the seed spread of {len(own)} {record['method']} seeds"
    others: dict[str, float] = {}
    for method in sorted({r["method"] for r in same}):
        for name, value in spread([r for r in same if r["method"] == method]).items():
            others[name] = max(others.get(name, 0.0), value)
    if others:
        return others, f"{BAND:.2f} x the largest seed spread of the cell's other methods"
    return {}, f"no seed spread: {NO_SPREAD_REL:g} relative"


def stratified(pool: list[dict], n: int, seed: int) -> list[dict]:
    """``n`` records: domains take turns (in a random order), and within each its methods take turns."""
    rng = random.Random(seed)
    queues: dict[str, list[list[dict]]] = {}
    for domain in sorted({r["domain"] for r in pool}):
        by_method: dict[str, list[dict]] = {}
        for r in pool:
            if r["domain"] == domain:
                by_method.setdefault(r["method"].split("@", 1)[0], []).append(r)
        lists = [rng.sample(v, len(v)) for _, v in sorted(by_method.items())]
        rng.shuffle(lists)
        queues[domain] = lists
    order = sorted(queues)
    rng.shuffle(order)
    chosen: list[dict] = []
    while len(chosen) < n and any(queues.values()):
        for domain in order:
            lists = queues[domain]
            if lists and len(chosen) < n:
                head = lists.pop(0)
                chosen.append(head.pop(0))
                if head:
                    lists.append(head)  # this method's next record waits for the domain's other methods
    return chosen


def _code_missing(origin: dict | None) -> str | None:
    """Why an outside method's code cannot be found from here (None: found, or a built-in method)."""
    import importlib.util

    from ..catalog import method_entry_points

    if not origin:
        return None
    kind, spec = origin.get("kind"), str(origin.get("spec", ""))
    if kind == "file":
        found = Path(spec.rpartition(":")[0]).is_file()
    elif kind == "entry_point":
        found = origin.get("entry_point") in method_entry_points()
    else:
        found = importlib.util.find_spec(spec.partition(":")[0].split(".")[0]) is not None
    return None if found else f"the code of its method ({spec}) is not found from this folder"


def planned_from(record: dict):
    """The PlannedRun a record describes; ConfigError when it no longer makes one."""
    from pydantic import ValidationError

    from ..harness.plan import PlannedRun
    from ..task import get_task

    task = get_task(record["domain"])
    hparams = dict(record["hparams"])
    for key in task.cache_location_fields & set(hparams):
        hparams[key] = None  # '<local cache>' in the record: this machine's default cache
    try:
        hp = task.HParams(**hparams)
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(f"its hyper-parameters are not valid now: {'.'.join(map(str, first['loc']))}: "
                          f"{first['msg']}") from None
    spec, origin = None, record.get("method_origin")
    if origin:
        from ..methods.registry import register_external
        from ..methods.external import load

        # the outside method's code, found as it was named when recorded (relative to this folder)
        spec = origin["entry_point"] if origin.get("kind") == "entry_point" else origin["spec"]
        found = load(spec, expect_key=record["method"])
        register_external(found)
        spec, origin = found.spec, found.origin
    run = PlannedRun(record["domain"], record["dataset"], record["model"], record["method"], record["scale"],
                     record["seed"], hp, dict(record.get("overrides") or {}), record.get("data"),
                     method_spec=spec, method_origin=origin, budget=record.get("budget"))  # --budget runs too
    if run.id != record["id"]:
        raise ConfigError(f"its recorded configuration gives the id {run.id}, not its own")
    return run


def compared(record: dict) -> dict[str, Any]:
    """'test.<metric>' and 'val.<metric>' values (the best validation's epoch left out)."""
    metrics = record.get("metrics") or {}
    return {f"{split}.{name}": value for split in ("test", "val")
            for name, value in sorted((metrics.get(split) or {}).items()) if name != "epoch"}


def _number(value: Any) -> float:
    try:
        return float(value)  # 'nan' / 'inf' as stored
    except (TypeError, ValueError):
        return math.nan


def rel_diff(a: Any, b: Any) -> float:
    x, y = _number(a), _number(b)
    if x == y or (math.isnan(x) and math.isnan(y)):
        return 0.0
    if not (math.isfinite(x) and math.isfinite(y)):
        return math.inf
    return abs(x - y) / max(abs(x), abs(y))


def environment(provenance: dict) -> dict[str, Any]:
    return {key: provenance.get(key) for key in ENVIRONMENT_KEYS}


def same_environment(recorded: dict, now: dict) -> bool:
    return environment(recorded) == environment(now) and recorded.get("dirty") is False


def recorded_threads(provenance: dict) -> int | None:
    """The CPU thread count the record's device line states ('cpu (x86_64, 2 threads)')."""
    found = re.search(r"(\d+) threads\)", str(provenance.get("device", "")))
    return int(found.group(1)) if found else None


def run_as_recorded(run, record: dict, store: Path, device: str) -> dict[str, Any]:
    """Run ``run`` (``planned_from(record)``) on the record's own CPU thread count: a reduction's order, and so
    the last digits of its numbers, depend on it. Returns the new record (not written)."""
    import torch

    from ..harness.runner import run_one

    threads, before = recorded_threads(record.get("provenance", {})), torch.get_num_threads()
    if threads and device == "cpu":
        torch.set_num_threads(threads)
    try:
        return run_one(run, store, device)
    finally:
        torch.set_num_threads(before)


def verify_one(record: dict, store: Path, device: str, tolerance: tuple[dict[str, float], str] = ({}, "")
               ) -> dict[str, Any]:
    """Re-run one record into ``store``; its entry of verification.json (plus 'why' for the console).
    ``tolerance``: (per metric, its source) where the environment differs (``cell_tolerance``)."""
    from ..harness.store import write_record

    recorded = compared(record)
    try:
        run = planned_from(record)
    except ConfigError as err:
        return {"agree": False, "identical": False, "max_rel_diff": None,
                "metrics": {k: [v, None] for k, v in recorded.items()}, "why": str(err)}
    rerun = run_as_recorded(run, record, store, device)
    write_record(store, rerun)
    now = compared(rerun)
    names = sorted(set(recorded) | set(now))
    diffs = [rel_diff(recorded.get(k), now.get(k)) for k in names]
    identical = rerun["status"] == "ok" and all(k in recorded and k in now and recorded[k] == now[k] for k in names)
    worst = max(diffs, default=0.0)
    same_env = same_environment(record.get("provenance", {}), rerun["provenance"])
    tol, source = tolerance
    outside = [k for k in names if not _within(recorded.get(k), now.get(k), tol.get(k))]
    agree = identical if same_env else rerun["status"] == "ok" and not outside
    primary = f"test.{record.get('primary_metric')}"
    primary_tol = tol.get(primary)
    stated = (f"tolerance {primary} {primary_tol:.3g} ({source})" if primary_tol is not None else f"tolerance ({source})")
    why = ("bit-identical" if identical else
           f"rerun {rerun['status']}: {rerun.get('error')}" if rerun["status"] != "ok" else
           f"max relative difference {worst:.3g} in the same environment" if same_env else
           f"max relative difference {worst:.3g}; {stated}"
           + (f"; outside it: {', '.join(f'{k} {_number(recorded.get(k)):.6g} vs {_number(now.get(k)):.6g}' for k in outside)}"
              if outside else ""))
    return {"agree": bool(agree), "identical": bool(identical),
            "max_rel_diff": worst if math.isfinite(worst) else None,
            "tolerance": {"source": "bit-identical (same environment)" if same_env else source,
                          "metrics": {} if same_env else {k: tol[k] for k in names if k in tol}},
            "metrics": {k: [recorded.get(k), now.get(k)] for k in names}, "why": why}


def _within(recorded: Any, now: Any, tol: float | None) -> bool:
    """Within the metric's tolerance (``cell_tolerance``), or NO_SPREAD_REL relative where there is none."""
    if tol is None:
        return rel_diff(recorded, now) <= NO_SPREAD_REL
    x, y = _number(recorded), _number(now)
    return (math.isnan(x) and math.isnan(y)) or abs(x - y) <= tol


def merged(path: Path, fresh: dict[str, Any]) -> dict[str, Any]:
    """``fresh`` over what ``path`` holds: earlier entries of other records are kept."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = {}
    records = old.get("records") if isinstance(old, dict) and isinstance(old.get("records"), dict) else {}
    return {**fresh, "records": {**records, **fresh["records"]}}


def verify_command(results: Path, sample: int, seed: int, domain: str | None = None,
                   max_seconds: float | None = None, device: str = "cpu") -> int:
    from tqdm.auto import tqdm

    from ..harness.provenance import provenance
    from ..harness.store import iter_records

    if sample < 1:
        raise ConfigError(f"--sample must be at least 1, got {sample}")
    records = list(iter_records(results))
    if not records:
        raise ConfigError(f"no valid run records under {results}/runs")
    pool, unrunnable = candidates(records, domain, max_seconds)
    if not pool:
        raise ConfigError(f"no completed record under {results}/runs that can be re-run here"
                          + (f" (domain {domain})" if domain else "")
                          + (f" (recorded wall_s <= {max_seconds})" if max_seconds is not None else "")
                          + "".join(f"; {n} cannot ({why})" for why, n in sorted(unrunnable.items())))
    chosen = stratified(pool, sample, seed)
    print(f"verify: re-running {len(chosen)} of {len(pool)} eligible records of {results} (seed {seed})",
          file=sys.stderr)
    for why, count in sorted(unrunnable.items()):
        print(f"verify: note: {count} records cannot be re-run here ({why})", file=sys.stderr)

    import torch

    entries: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="dfabench-verify-") as store:
        bar = tqdm(chosen, desc="verify", unit="run", file=sys.stderr)
        for record in bar:
            label = f"{record['domain']}/{record['dataset']}/{record['model']} {record['method']} seed={record['seed']}"
            bar.set_postfix_str(label)
            entry = verify_one(record, Path(store), device, cell_tolerance(record, records))
            tqdm.write(f"{'agree' if entry['agree'] else 'DISAGREE'}  {record['id']}  {label}  "
                       f"{record['scale']}: {entry.pop('why')}", file=sys.stderr)
            entries[record["id"]] = entry
    env = environment(provenance(torch.device(device), "unknown"))
    fresh = {"verified_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
             "sample": len(chosen), "seed": seed, "environment": env,
             "tolerance": {"same_environment": "bit-identical",
                           "otherwise": f"per metric, {BAND:.2f} x the seed spread of the record's cell and method "
                                        f"in RESULTS (std, ddof 1; see each record's tolerance); none: "
                                        f"{NO_SPREAD_REL:g} relative"},
             "records": entries}
    out = results / FILE
    out.write_text(json.dumps(merged(out, fresh), indent=1, sort_keys=True) + "\n")
    bad = [k for k, e in entries.items() if not e["agree"]]
    same = sum(e["identical"] for e in entries.values())
    domains = sorted({r["domain"] for r in chosen})
    print(f"verify: {len(entries) - len(bad)} of {len(entries)} agree ({same} bit-identical), {len(bad)} disagree"
          f"{': ' + ', '.join(bad) if bad else ''}; domains {', '.join(domains)}; where the environment differs, "
          f"{BAND:.2f} x each cell's seed spread is the tolerance; wrote {out}")
    return 1 if bad else 0
