"""How long the command line takes to answer: the median wall time of several fresh processes.

    python benchmarks/cli_start.py [--repeats 7] [--cell mlp/fashion-mnist/mlp]

Prints one line per command: `dfabench --help`, `dfabench list`, and `dfabench run CELL` up to the
moment its first training epoch starts (the run's own progress bar appears; the process is then
stopped); then what a plain Python process pays for the libraries under that start: `import torch`,
and the same with `torch._dynamo`, which torch's optimisers import at their first use (`run` imports
them with the garbage collector paused, dfabench/startup.py, so it can start in less). Targets
(issue 21): under 1 s for --help and list on a quiet 2-core machine, under 3 s for run to start
training an mlp cell. Run it on a quiet machine: other processes inflate every number.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def dfabench() -> list[str]:
    found = shutil.which("dfabench")
    return [found] if found else [sys.executable, "-m", "dfabench.cli"]


def answer_s(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(dfabench() + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def import_s(modules: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {modules}"], check=True)
    return time.perf_counter() - start


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process so far (Linux /proc; NaN elsewhere)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def training_starts_s(cell: str, results: str) -> tuple[float, float]:
    """Wall and CPU seconds from launch until the run's epoch bar ('CELL bp seed=0') is printed.
    The CPU time is what a quiet machine would need at most as wall time for the single-threaded
    start (imports, reading the data), less inflated by other processes than the wall time."""
    label = f"{cell} bp seed=0".encode()
    env = {**os.environ, "TQDM_MININTERVAL": "0"}
    start = time.perf_counter()
    proc = subprocess.Popen(dfabench() + ["run", cell, "--method", "bp", "--results", results, "--set", "epochs=1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    seen = b""
    try:
        while True:
            chunk = os.read(proc.stderr.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"dfabench run ended before training started: {seen[-500:].decode()}")
            seen += chunk
            if seen.count(label) >= 1 and b"epoch" in seen[seen.index(label):]:
                return time.perf_counter() - start, _cpu_s(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cell", default="mlp/fashion-mnist/mlp")
    args = parser.parse_args()
    answer_s(["--help"])  # warm the file cache once, as a user's second call would be
    with tempfile.TemporaryDirectory() as results:
        starts = [training_starts_s(args.cell, results) for _ in range(max(3, args.repeats // 2))]
        measured = {
            "dfabench --help": [answer_s(["--help"]) for _ in range(args.repeats)],
            "dfabench list": [answer_s(["list"]) for _ in range(args.repeats)],
            f"dfabench run {args.cell} until training starts": [wall for wall, _ in starts],
            "  the same, CPU time of the process": [cpu for _, cpu in starts],
            # what no command can avoid: torch, and torch._dynamo, which torch.optim imports at first use
            "python -c 'import torch'": [import_s("torch") for _ in starts],
            "python -c 'import torch, torch._dynamo'": [import_s("torch, torch._dynamo") for _ in starts],
        }
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"cpus={os.cpu_count()} load_1min={load:.2f} python={sys.version.split()[0]}")
    for name, times in measured.items():
        print(f"{name:62s} median {statistics.median(times):6.3f} s  (min {min(times):.3f}, max {max(times):.3f},"
              f" n={len(times)})")


if __name__ == "__main__":
    main()
