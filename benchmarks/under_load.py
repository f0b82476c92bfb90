"""Runs beside a busy job: the old thread default (one per core) against the new one (no more threads
than free cores, ``dfabench/harness/threads.py``), as a new user would meet them.

    python benchmarks/under_load.py [--cells mlp/fashion-mnist/mlp,mlp/fashion-mnist/mlp-tanh,...]
        [--method bp,dfa] [--repeat 2]
        [--out results/bench/under-load-2core.txt]

Each arm is one ``dfabench run CELL... --scale smoke`` (the quick start's kind of command; by default
three fashion-mnist MLP cells, six runs) into a fresh results folder (its wall time,
start-up included), with and without a busy job (a Python loop spinning on one core, started before
the arm and ended after it). "old" is the default before issue 34 (``OMP_NUM_THREADS`` = the cores,
what torch took by itself; the new rule keeps a thread count the user sets), "new" is no setting at
all. Arms alternate ``--repeat`` times; medians are reported with every value, and the ratios
busy/quiet per default. The load average is printed at the start and the end: on a machine that
other work also loads, the "quiet" arms are not quiet, and the file says so.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import Output, Parser, load_average, positive_int

BUSY = "while True:\n    pass\n"


def arm(cells: str, method: str, default: str, busy: bool) -> tuple[float, str]:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if default == "old":
        env["OMP_NUM_THREADS"] = str(len(os.sched_getaffinity(0)))
    spinner = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
    try:
        if spinner is not None:
            time.sleep(0.5)  # let it take its core
        with tempfile.TemporaryDirectory() as folder:
            t0 = time.perf_counter()
            done = subprocess.run([str(Path(sys.executable).with_name("dfabench")), "run", *cells.split(","), "--scale", "smoke",
                                   "--method", method, "--results", folder], env=env, capture_output=True, text=True, check=False)
            took = time.perf_counter() - t0
            runs = len(list(Path(folder, "runs").glob("*.json")))
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    if done.returncode != 0:
        raise SystemExit(f"dfabench run failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    return took, f"{runs} runs"


def main():
    parser = Parser(prog="under_load.py", description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="mlp/fashion-mnist/mlp,mlp/fashion-mnist/mlp-tanh,mlp/fashion-mnist/mlp-sgd",
                        help="comma-separated selectors")
    parser.add_argument("--method", default="bp,dfa")
    parser.add_argument("--repeat", type=positive_int, default=2)
    parser.add_argument("--out")
    args = parser.checked(parser.parse_args())
    say = Output(args.out)
    load = load_average()
    say(f"{len(os.sched_getaffinity(0))} cores, load average {load} at start; dfabench run {args.cells.replace(',', ' ')} "
        f"--scale smoke --method {args.method}, wall seconds, {args.repeat} times each, arms alternating")
    started = time.perf_counter()
    arms = [(d, b) for b in (False, True) for d in ("old", "new")]
    times = {a: [] for a in arms}
    for _ in range(args.repeat):
        for default, busy in arms:
            took, runs = arm(args.cells, args.method, default, busy)
            times[(default, busy)].append(took)
            say(f"  {default} default, {'busy job' if busy else 'no busy job'}: {took:6.1f} s ({runs}); "
                f"load {os.getloadavg()[0]:.2f}")
    med = {a: statistics.median(t) for a, t in times.items()}
    for default in ("old", "new"):
        say(f"{default} default: no busy job {med[(default, False)]:.1f} s, busy job {med[(default, True)]:.1f} s, "
            f"busy/quiet {med[(default, True)] / med[(default, False)]:.2f}")
    say(f"new/old: no busy job {med[('new', False)] / med[('old', False)]:.2f}, "
        f"busy job {med[('new', True)] / med[('old', True)]:.2f}")
    say(f"total {time.perf_counter() - started:.0f} s, load average {load_average()} at the end")
    say.close()


if __name__ == "__main__":
    main()
