"""FLOPs and time of each training-step phase (forward, backward, optimiser) for BP, DFA and shallow on
the cells of the equal-compute comparison (issue 33), in one process, and their ratios to BP.

    python benchmarks/compute_phases.py [--scale small] [--steps 20] [--threads 1]
        [--cells mlp/digits/mlp,...] [--out results/budget/phases-cpu-1thread.txt]

Each cell is built as the runner builds it (data, model, method, optimiser: ``harness/runner.py``), at
``--scale``; the batch is the first training batch of seed 0. FLOPs per phase are counted with
``harness.compute.counted_step`` (torch's FlopCounterMode; the optimiser a hand count), the count the
records carry. Times are the median over ``--steps`` steps of each phase on its own clock, the methods
alternating step by step so that drift in the machine's load hits them alike. Where DFA's FLOP ratio
and its time ratio disagree, the phase lines say where: a backward that does fewer products but is not
faster in proportion (small products dominated by per-operation overhead), or a forward and an
optimiser that cost the same for every method and dilute the saving.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import sys
import time

import torch

CELLS = ["mlp/digits/mlp", "vision/digits/lenet", "ctr/movielens/dcn", "graph/csbm/gcn", "mlp/fashion-mnist/mlp",
         "lm/wiki-gensim/transformer", "nerf/blobs/nerf"]
METHODS = ("bp", "dfa", "shallow")
PHASES = ("forward", "backward", "optimizer")


def build(cell: str, method: str, scale: str):
    """(step pieces, batch) for one cell and method, as the runner makes them for seed 0."""
    from dfabench.harness.optim import build_optimizer
    from dfabench.harness.plan import plan
    from dfabench.methods import create

    (run,), _ = plan([cell], [method], scale, [0])
    task, hp = run.task, run.hparams
    torch.manual_seed(0)
    data = task.load_data(run.dataset, hp, 0, scale, torch.device("cpu"))
    model = task.build_model(run.model, hp, data)
    batch = next(iter(task.train_batches(data, hp, torch.Generator().manual_seed(0))))
    m = create(method, hp.method_options)
    m.prepare(model, lambda: task.forward(model, batch), 0)
    optimizer = build_optimizer(model.parameters(), hp)
    return (model, m, optimizer, task.forward, lambda out, b: task.loss(out, b, model, hp)), batch


def timed_step(pieces, batch) -> tuple[float, float, float]:
    """One step with each phase on its own clock (ms)."""
    model, method, optimizer, forward, loss = pieces
    optimizer.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    output = forward(model, batch)
    t1 = time.perf_counter()
    method.backward(output, lambda out: loss(out, batch))
    t2 = time.perf_counter()
    optimizer.step()
    t3 = time.perf_counter()
    return (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3


def bench_cell(cell: str, scale: str, steps: int, say) -> None:
    from dfabench.harness.compute import counted_step

    built = {m: build(cell, m, scale) for m in METHODS}
    flops = {}
    for m, (pieces, batch) in built.items():
        model, method, optimizer, forward, loss = pieces
        flops[m] = counted_step(model, method, optimizer, forward, loss, None, batch)[1]
    for _ in range(2):  # warm-up
        for m, (pieces, batch) in built.items():
            timed_step(pieces, batch)
    times = {m: [] for m in METHODS}
    for _ in range(steps):
        for m, (pieces, batch) in built.items():
            times[m].append(timed_step(pieces, batch))
    ms = {m: [statistics.median(t[i] for t in times[m]) for i in range(3)] for m in METHODS}
    say(f"{cell} ({scale}; median of {steps} steps, alternating)")
    for m in METHODS:
        f, t = flops[m], ms[m]
        say(f"    {m:8} FLOPs fwd/bwd/opt {f['forward']:.3g} / {f['backward']:.3g} / {f['optimizer']:.3g}"
            f"   ms fwd/bwd/opt {t[0]:.2f} / {t[1]:.2f} / {t[2]:.2f}   step {sum(t):.2f} ms")
    for m in METHODS[1:]:
        f_ratio = sum(flops[m].values()) / sum(flops["bp"].values())
        t_ratio = sum(ms[m]) / sum(ms["bp"])
        bwd_f = flops[m]["backward"] / flops["bp"]["backward"]
        bwd_t = ms[m][1] / ms["bp"][1]
        say(f"    {m}/bp step: FLOPs {f_ratio:.3f}  time {t_ratio:.3f}   backward: FLOPs {bwd_f:.3f}  time {bwd_t:.3f}"
            f"   forward+optimiser share of BP's step time {(ms['bp'][0] + ms['bp'][2]) / sum(ms['bp']):.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="small")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cells", default=",".join(CELLS))
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.steps < 1 or args.threads < 1:
        print("compute_phases: --steps and --threads must be at least 1", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    buffer = io.StringIO()

    def say(line: str) -> None:
        print(line, flush=True)
        buffer.write(line + "\n")

    from dfabench.harness.provenance import git_state

    state = git_state()
    say(f"dfabench at commit {(state['commit'] or 'unknown')[:12]}{' (modified tree)' if state.get('dirty') else ''}; "
        f"torch {torch.__version__}, cpu, {args.threads} thread(s), {os.cpu_count()} CPUs ({platform.machine()}), "
        f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} at start")
    start = time.perf_counter()
    for cell in args.cells.split(","):
        with contextlib.redirect_stderr(io.StringIO()):  # data loaders' progress
            bench_cell(cell, args.scale, args.steps, say)
    say(f"took {time.perf_counter() - start:.0f} s; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} at end")
    if args.out:
        with open(args.out, "w") as f:
            f.write(buffer.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
