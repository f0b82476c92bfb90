"""How many intra-op threads a CPU run uses: never more than the cores that are free when it starts.

torch starts with one thread per core. Beside another busy job, two threads on a machine with one
free core wait for each other at every parallel operation, each time for a whole scheduler slice of
the other job: the smoke gate took 417 s that way against 33 s on one thread (issue 34). One thread
too few costs at most the parallel speed-up (under 2x on two cores); one too many costs 10-30x. So a
run takes ``min(cap, free cores)`` threads, at least one, where the free cores are measured over
0.1 s from /proc/stat (the idle time of the cores this process may use), and re-measured at most
every 30 s. ``cap``: the thread count torch has (its default, one per core, or what the caller set); with
OMP_NUM_THREADS set nothing is measured or changed (the user's choice stands); Ray workers pass their
CPU share and ``tune``'s trials 1.
"""
from __future__ import annotations

import os
import time

import torch

SAMPLE_S = 0.1
REFRESH_S = 30.0
_last: tuple[float, float] | None = None  # (when, free cores)


def _cores() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def _idle_and_total(cores: list[int]) -> tuple[int, int] | None:
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    wanted = {f"cpu{c}" for c in cores}
    idle = total = 0
    for line in lines:
        fields = line.split()
        if fields and fields[0] in wanted:
            ticks = [int(v) for v in fields[1:]]
            idle += ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
            total += sum(ticks[:8])  # user..steal (guest time is already counted in user)
    return (idle, total) if total else None


def free_cores() -> float:
    """Cores (of those this process may use) that were idle over the last ``SAMPLE_S`` seconds."""
    cores = _cores()
    before = _idle_and_total(cores)
    if before is None:  # no /proc/stat: the 1-minute load average instead
        return max(0.0, len(cores) - os.getloadavg()[0])
    time.sleep(SAMPLE_S)
    after = _idle_and_total(cores)
    if after is None or after[1] <= before[1]:
        return float(len(cores))
    return len(cores) * (after[0] - before[0]) / (after[1] - before[1])


def choose(cap: int, free: float) -> int:
    """The rule: as many threads as whole free cores, at most ``cap``, at least one."""
    return max(1, min(cap, round(free)))


def user_threads() -> int | None:
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


_cap: int | None = None  # the count set by torch or by the caller, before this module lowered it
_ours: int | None = None  # the count this module set last


def apply(cap: int | None = None) -> int:
    """Set torch's intra-op threads for a CPU run by the rule and return the count.

    Without ``cap``: OMP_NUM_THREADS, where set, is left alone; else the cap is the count torch has,
    unless that is the count this module set last (then the cap before it): a caller's own
    ``torch.set_num_threads`` is a cap the rule keeps to."""
    global _last, _cap, _ours
    if cap is None:
        if user_threads() is not None:
            return torch.get_num_threads()
        current = torch.get_num_threads()
        if _cap is None or current != _ours:
            _cap = current
        cap = _cap
    now = time.monotonic()
    if cap == 1:
        threads = 1
    else:
        if _last is None or now - _last[0] > REFRESH_S:
            _last = (now, free_cores())
        threads = choose(cap, _last[1])
    torch.set_num_threads(threads)
    _ours = threads
    return threads
