"""Run planned runs as Ray tasks, on a local Ray instance or an existing cluster.

Each run becomes one Ray task that asks for the resources its cell declares (``Task.resources``:
CPUs, and a GPU fraction with ``--device cuda``). Workers train and return the record; the driver
writes every record atomically into the results directory as it arrives, so the records are the
same files the local executor writes (same ids, same fields) and an interrupted suite resumes the
same way. Artifacts a task saves (NeRF images) are written by the worker under
``<results>/artifacts``: on a multi-machine cluster, give ``--results`` a shared filesystem path.

Ray is an optional extra: ``pip install 'dfabench[ray]'``.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable


from ..hparams import ConfigError
from ..task import get_task
from .claims import try_claim
from .executor import pending
from .plan import PlannedRun
from .progress import SuiteBar
from .store import write_record


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'dfabench[ray]'") from None
    return ray


def _remote_run(run: PlannedRun, results: str, device: str, threads: int) -> dict:
    # Ray workers default to one OpenMP thread; give torch what the task asked for, but never more
    # threads than free cores (threads.py: the same rule as the local executor's).
    from . import threads as thread_rule
    from .runner import run_one

    if device == "cpu":
        thread_rule.apply(threads)
    else:
        import torch

        torch.set_num_threads(threads)
    return run_one(run, Path(results), device)


def run_ray(runs: list[PlannedRun], results: Path, device: str = "cpu", address: str | None = None,
            on_record: Callable[[dict], None] | None = None) -> list[dict]:
    ray = _import_ray()
    todo = pending(runs, results)
    if not todo:
        return []
    started_here = not ray.is_initialized()
    if started_here:
        # address=None starts a local instance; "auto" or "ray://host:10001" joins a cluster.
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    remote = ray.remote(_remote_run)
    futures = {}
    # The driver claims every run it submits (claims.py), so another invocation on the same results
    # folder leaves them alone; runs another invocation holds are left to it.
    claims = {}
    for run in todo:
        claim = try_claim(results, run.id)
        if claim is None:
            print(f"note: {run.label()} is being run by another invocation; left to it", file=sys.stderr)
        else:
            claims[run.id] = claim
    todo = [r for r in todo if r.id in claims]
    for run in todo:
        need = get_task(run.domain).resources(run.model, run.scale, device)
        threads = max(1, int(need["num_cpus"]))
        future = remote.options(num_cpus=need["num_cpus"], num_gpus=need["num_gpus"],
                                name=f"dfabench:{run.label()}").remote(run, str(results), device, threads)
        futures[future] = run
    records = []
    try:
        with SuiteBar(total=len(runs), done=len(runs) - len(todo), desc="suite (ray)") as suite:
            remaining = list(futures)
            while remaining:
                done, remaining = ray.wait(remaining, num_returns=1)
                record = ray.get(done[0])
                write_record(results, record)
                claims.pop(record["id"]).release()
                records.append(record)
                if on_record:
                    on_record(record)
                suite.start(futures[done[0]].label())
                suite.finished(record)
    finally:
        for claim in claims.values():
            claim.release()
        if started_here:
            ray.shutdown()
    return records
