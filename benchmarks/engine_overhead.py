"""DFA's host overhead over BP, before and after the planned step (issue 23), with the arithmetic made negligible.

    python benchmarks/engine_overhead.py [--steps 3000] [--out results/bench/engine-overhead.txt]

A 4 x 8 tanh MLP on a batch of 4, one thread: the step time is Python, dispatch and autograd
bookkeeping. "dfa-old" is the frozen copy of the step before the plans (tests/test_engine_hotpath.py,
the same code the bit-identity test compares with); all three alternate step by step.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dfabench.engine import FeedbackPoint
from dfabench.methods import create

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_engine_hotpath import FrozenDFA  # noqa: E402


def net():
    torch.manual_seed(0)
    layers = []
    for _ in range(4):
        layers += [nn.Linear(8, 8), nn.Tanh(), FeedbackPoint()]
    return nn.Sequential(*layers, nn.Linear(8, 2))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.set_num_threads(1)
    x, y = torch.randn(4, 8), torch.randint(0, 2, (4,))
    steps = {}
    for name, method in (("bp", create("bp")), ("dfa-new", create("dfa")), ("dfa-old", FrozenDFA())):
        model = net()
        method.prepare(model, lambda m=model: m(x), 0)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)

        def step(model=model, method=method, opt=opt):
            opt.zero_grad(set_to_none=True)
            method.backward(model(x), lambda out: F.cross_entropy(out, y))
            opt.step()
        steps[name] = step
    times = {k: [] for k in steps}
    for _ in range(200):
        for step in steps.values():
            step()
    for _ in range(args.steps):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    median = {k: 1e6 * statistics.median(v) for k, v in times.items()}
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    lines = [f"torch {torch.__version__}, 1 thread, load average {load}; tiny 4x8 tanh MLP, batch 4, "
             f"median of {args.steps} steps (us): " + " ".join(f"{k} {v:.0f}" for k, v in median.items()),
             f"DFA over BP: planned step {median['dfa-new'] - median['bp']:.0f} us, "
             f"before the plans {median['dfa-old'] - median['bp']:.0f} us"]
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
