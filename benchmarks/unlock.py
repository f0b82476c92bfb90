"""DFA's unlocked backward across pipeline stages, measured: BP and DFA step times on 1, 2 and as many
stages as the machine has cores (one process and one core per stage), beside two models and a
calibrated simulation.

    python benchmarks/unlock.py [--device cpu|cuda] [--stages 1,2] [--micro-batches 1,4] [--steps 10] [--rounds 2]
        [--depth 8] [--width 1024] [--batch 256] [--ethernet 50e-6,1.25e9] [--nvlink 10e-6,300e9]
        [--gpu-step-ms 1.30] [--out results/bench/unlock-cpu-2core.txt]

The model is a ``depth`` x ``width`` tanh MLP (784 -> 10, a FeedbackPoint after every hidden layer),
cut into stages right after feedback points, balanced by parameters (``dfabench.distributed``). Both
methods run the same GPipe schedule with m micro-batches (``dfabench/distributed/pipeline.py``); BP
and DFA steps alternate step by step in the same processes, each step between two barriers; the median
over ``--steps`` steps is taken, ``--rounds`` times with the stage counts alternating, and the median of
the rounds reported (each round's figures are printed too).

1. Calibration (this process, one thread): every block's forward, BP backward (weight and input
   gradients), DFA backward (its share of ``e B`` and weight gradients only) and update, per
   micro-batch; the link's latency and bandwidth from a ping-pong between two stage processes.
2. Steps: BP and DFA step time per (stages, micro-batches), the measured gain BP/DFA beside the
   reviewers' model (N forward + N backward against N forward + 1 parallel backward, free links,
   one micro-batch) and GPipe's bubble (N - 1)/(m + N - 1), and the simulation's prediction
   (``dfabench/distributed/simulate.py``) with its error. The simulation takes the block times, the
   measured link, and one more figure from the 1-stage run: the host time per micro-batch that the
   block times leave out (the pipeline's bookkeeping, dispatch), so its 1-stage rows match by
   construction and the rows with more stages are the predictions that test it.
3. Curves: the simulated gain BP/DFA against N = 1..64 stages (one hidden block per stage), for a CPU
   cluster on Ethernet (this machine's block times; ``--ethernet`` latency,bandwidth) and for GPUs on
   NVLink (``--nvlink``; block times are this machine's scaled so that the 4 x 1024 MLP's BP step
   takes ``--gpu-step-ms``, the H100's in results/bench/engine-h100-host.txt: an assumption, since
   no GPU was timed block by block).

``--device cuda`` runs one process per GPU with NCCL (as many GPUs as the most stages asked for);
without them it refuses in one line, exit 2. The load average is printed at the start and the end.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from dfabench.distributed import launch
from dfabench.distributed.pipeline import Pipeline
from dfabench.distributed.placement import split_points
from dfabench.distributed.simulate import (
    Block,
    Link,
    bubble,
    reviewers,
    step_times,
)
from dfabench.engine import FeedbackPoint
from dfabench.methods import create

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import Output, Parser, load_average, positive_int

INPUTS, CLASSES = 784, 10
METHODS = ("bp", "dfa", "dfa_eager")  # BP and DFA on GPipe; DFA on its eager schedule


def mlp(depth: int, width: int) -> nn.Sequential:
    layers, size = [], INPUTS
    for _ in range(depth):
        layers += [nn.Linear(size, width), nn.Tanh(), FeedbackPoint()]
        size = width
    return nn.Sequential(*layers, nn.Linear(width, CLASSES))


def batch(size: int, device):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(size, INPUTS, generator=g).to(device), torch.randint(0, CLASSES, (size,), generator=g).to(device))


def loss_fn(out, y):
    return F.cross_entropy(out, y)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


# -- 1. calibration -------------------------------------------------------------------------------
def once(fn, setup, device) -> float:
    """Seconds of one ``fn(setup())`` (setup not timed)."""
    state = setup()
    sync(device)
    t0 = time.perf_counter()
    fn(state)
    sync(device)
    return time.perf_counter() - t0


def calibrate(depth, width, micro, device, reps=15) -> list[Block]:
    """Each block's times on one micro-batch (a block: Linear, Tanh, FeedbackPoint; then the head): the
    median of ``reps`` rounds, each round timing every block's forward, BP backward, DFA backward and
    update once in turn, so that a change in the machine's load moves every figure alike."""
    torch.manual_seed(0)
    model = mlp(depth, width).to(device)
    x, y = micro
    modules = list(model)
    parts, h = [], x
    for i in range(depth + 1):
        block = nn.Sequential(*modules[3 * i: 3 * i + 3])
        parts.append(block_parts(block, h.detach(), y, i == 0, i == depth, width, device))
        with torch.no_grad():
            h = block(h)
    times = [[[] for _ in range(4)] for _ in parts]
    for rep in range(reps + 2):
        for measures, into in zip(parts, times):
            for (fn, setup), kept in zip(measures[0], into):
                took = once(fn, setup, device)
                if rep >= 2:  # two warm-up rounds
                    kept.append(took)
    return [Block(*(statistics.median(t) for t in into), measures[1]) for measures, into in zip(parts, times)]


def block_parts(block, h_in, y, first: bool, head: bool, width: int, device):
    """The four timed pieces of one block, as (fn, setup) pairs, and the bytes of its output."""
    g = torch.Generator().manual_seed(1)
    B = (torch.rand(CLASSES, width, generator=g) * 2 - 1).to(device) / width ** 0.5
    e = torch.randn(len(h_in), CLASSES, device=device) / len(h_in)
    params = list(block.parameters())
    opt = torch.optim.SGD(params, lr=1e-4)

    def fresh(requires):
        for p in params:
            p.grad = None
        return h_in.clone().requires_grad_(requires)

    def forward(state):
        out = block(state)
        return loss_fn(out, y) if head else out

    def bp_setup():
        out = forward(fresh(not first))
        return out, (None if head else torch.randn_like(out))

    def dfa(out):  # the head: its own gradient from the loss; a hidden block: B e, then dW only
        if head:
            out.backward()
        else:
            torch.autograd.backward(out, (e @ B).view_as(out))

    def update_setup():
        for p in params:
            p.grad = torch.zeros_like(p)

    with torch.no_grad():
        out = block(h_in)
    return ([(forward, lambda: fresh(not first)), (lambda s: torch.autograd.backward(s[0], s[1]), bp_setup),
             (dfa, lambda: forward(fresh(False))), (lambda _: opt.step(), update_setup)],
            out.numel() * out.element_size())


def link_figures(rank, device, nbytes: int, reps=30) -> tuple[float, float]:
    """Latency and bandwidth between ranks 0 and 1, by ping-pong: the one-way time of a 4-byte
    message, and of an ``nbytes`` message less that (``nbytes``: 4 MiB at least, so that the transfer
    time is well above the clock's noise)."""
    nbytes = max(nbytes, 4 << 20)
    out = []
    for size in (1, nbytes // 4):
        buffer = torch.zeros(size, device=device)
        times = []
        for _ in range(reps + 3):
            sync(device)
            t0 = time.perf_counter()
            if rank == 0:
                dist.send(buffer, 1)
                dist.recv(buffer, 1)
            elif rank == 1:
                dist.recv(buffer, 0)
                dist.send(buffer, 0)
            sync(device)
            times.append((time.perf_counter() - t0) / 2)
        out.append(statistics.median(times[3:]))
    latency = out[0]
    # on a loaded machine the small message's wake-up can eat most of the large one's time: then
    # take at least half the large message's time as transfer, rather than divide by almost nothing
    return latency, nbytes / max(out[1] - latency, out[1] / 2)


# -- 2. the pipelined steps -------------------------------------------------------------------------
def worker(rank, world, config: dict, result: str):
    device = torch.device(f"cuda:{rank}" if config["device"] == "cuda" else "cpu")
    x, y = batch(config["batch"], device)
    report = {}
    if world >= 2 and config["link"]:
        report["link"] = link_figures(rank, device, config["act_bytes"])
        dist.barrier()
    for m in config["micro_batches"]:
        steps = {}
        for name in METHODS:
            torch.manual_seed(0)
            model = mlp(config["depth"], config["width"]).to(device)
            method = create(name.removesuffix("_eager"))
            method.prepare(model, lambda model=model: model(x), seed=0)
            pipe = Pipeline(model, method, x, loss_fn, micro_batches=m,
                            schedule="eager" if name.endswith("_eager") else "gpipe")
            opt = torch.optim.SGD(pipe.parameters(), lr=1e-4)

            def step(pipe=pipe, opt=opt):
                opt.zero_grad(set_to_none=True)
                pipe.step(x, y)
                opt.step()
                sync(device)
            steps[name] = step
        times = {name: [] for name in steps}
        for s in range(config["steps"] + 2):
            for name in METHODS[s % 3:] + METHODS[:s % 3]:  # each first in turn
                dist.barrier()
                t0 = time.perf_counter()
                steps[name]()
                dist.barrier()
                if s >= 2:
                    times[name].append(time.perf_counter() - t0)
        report[str(m)] = {name: statistics.median(t) for name, t in times.items()}
        report["cuts"] = pipe.cuts
    if rank == 0:
        Path(result).write_text(json.dumps(report))


def measure(world, config) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        result = os.path.join(folder, "result.json")
        launch.run(worker, world, config, result, device=config["device"], threads=1)
        return json.loads(Path(result).read_text())


# -- 3. the report --------------------------------------------------------------------------------
def pair(text: str) -> tuple[float, float]:
    try:
        latency, bandwidth = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give latency_s,bandwidth_bytes_per_s") from None
    if not latency >= 0 or not bandwidth > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: latency must be >= 0 and bandwidth > 0")
    return latency, bandwidth


def counts(text: str) -> list[int]:
    values = [positive_int(v) for v in text.split(",")]
    return sorted(set(values))


def curve(say, label, hidden: Block, first: Block, head: Block, link: Link, error_bytes, scale=1.0):
    def scaled(b: Block) -> Block:
        return Block(b.f * scale, b.b_bp * scale, b.b_dfa * scale, b.u * scale, b.out_bytes)

    say(f"{label}: gain BP/DFA (simulated step times), one hidden block of this width per stage (the first "
        f"block rides with stage 1, the head with stage N), "
        f"link latency {link.latency * 1e6:.0f} us, bandwidth {link.bandwidth / 1e9:.2f} GB/s")
    say(f"  {'N':>3}  {'m=1':>6}  {'m=4':>6}  {'m=N':>6}  {'eager m=N':>9}  {'reviewers':>9}")
    for n in (1, 2, 4, 8, 16, 32, 64):
        blocks = [scaled(first)] + [scaled(hidden)] * n + [scaled(head)]
        cuts = list(range(2, n + 1))  # stage 0: the first block and one hidden; the last also the head
        row = []
        for m in (1, 4, n):
            t = step_times(blocks, cuts, m, link, error_bytes)
            row.append(t["bp"] / t["dfa"])
        r = reviewers(blocks, n)
        say(f"  {n:>3}  {row[0]:>6.2f}  {row[1]:>6.2f}  {row[2]:>6.2f}  {t['bp'] / t['dfa_eager']:>9.2f}  "
            f"{r['bp'] / r['dfa']:>9.2f}")


def main():
    parser = Parser(prog="unlock.py", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parser.add_argument("--stages", type=counts, default=sorted({1, 2, cores}))
    parser.add_argument("--micro-batches", type=counts, default=[1, 4])
    parser.add_argument("--steps", type=positive_int, default=10)
    parser.add_argument("--rounds", type=positive_int, default=2,
                        help="measure every stage count this many times, alternating; report the median")
    parser.add_argument("--depth", type=positive_int, default=8)
    parser.add_argument("--width", type=positive_int, default=1024)
    parser.add_argument("--batch", type=positive_int, default=256)
    parser.add_argument("--ethernet", type=pair, default=(50e-6, 1.25e9), help="latency_s,bandwidth_B/s (10 GbE)")
    parser.add_argument("--nvlink", type=pair, default=(10e-6, 300e9), help="latency_s,bandwidth_B/s (NVLink)")
    parser.add_argument("--gpu-step-ms", type=float, default=1.30,
                        help="the 4x1024 MLP's BP step on the GPU to scale block times to (H100: 1.30 ms)")
    parser.add_argument("--out", help="also write the output to this file")
    args = parser.checked(parser.parse_args())
    if max(args.stages) > args.depth:
        parser.error(f"--stages {max(args.stages)}: a depth-{args.depth} MLP can be cut into at most {args.depth} stages")
    if any(args.batch % m for m in args.micro_batches):
        parser.error(f"--batch {args.batch} does not split into --micro-batches {args.micro_batches}")
    if args.device.startswith("cuda") and torch.cuda.device_count() < max(args.stages):
        parser.error(f"--device cuda: {max(args.stages)} stages need as many GPUs; torch sees {torch.cuda.device_count()}")
    device = torch.device("cuda:0" if args.device.startswith("cuda") else "cpu")
    say = Output(args.out)
    started = time.perf_counter()
    load = load_average()
    say(f"torch {torch.__version__}, device {args.device}, {cores} cores ({platform.processor() or platform.machine()}), "
        f"load average {load} at start; {args.depth}x{args.width} tanh MLP, batch {args.batch}, one thread per "
        f"stage, median of {args.steps} steps, BP and DFA alternating, {args.rounds} rounds")
    torch.set_num_threads(1)
    shown = {}
    for m in args.micro_batches:
        micro = batch(args.batch // m, device)
        blocks = calibrate(args.depth, args.width, micro, device)
        shown[m] = blocks
        say(f"calibration, micro-batch {args.batch // m} (ms: forward / BP backward / DFA backward / update):")
        for i in (0, 1, args.depth):
            b = blocks[i]
            name = "first" if i == 0 else "head" if i == args.depth else "hidden"
            say(f"  {name:<6} {b.f * 1e3:7.3f} / {b.b_bp * 1e3:7.3f} / {b.b_dfa * 1e3:7.3f} / {b.u * 1e3:7.3f}")
    act_bytes = (args.batch // max(args.micro_batches)) * args.width * 4
    error_bytes = {m: (args.batch // m) * CLASSES * 4 for m in args.micro_batches}
    config = {"device": "cuda" if args.device.startswith("cuda") else "cpu", "batch": args.batch, "depth": args.depth,
              "width": args.width, "steps": args.steps, "micro_batches": args.micro_batches, "act_bytes": act_bytes,
              "link": True}
    runs = {n: [] for n in args.stages}
    for _ in range(args.rounds):  # the stage counts alternate, so that drift in the load moves each alike
        for n in args.stages:
            runs[n].append(measure(n, config))
    measured = {n: {"cuts": got[0]["cuts"], **{str(m): {k: statistics.median(r[str(m)][k] for r in got) for k in METHODS}
                                               for m in args.micro_batches}} for n, got in runs.items()}
    for n, got in runs.items():
        say(f"{n} stage(s), step ms in each of {len(got)} rounds: " + "; ".join(
            f"m={m} " + " ".join(f"{k} " + "/".join(f"{r[str(m)][k] * 1e3:.0f}" for r in got) for k in METHODS)
            for m in args.micro_batches))
    links = [r["link"] for got in runs.values() for r in got if "link" in r]
    if links:
        link = Link(statistics.median(v[0] for v in links), statistics.median(v[1] for v in links))
        say(f"link ({'NCCL' if config['device'] == 'cuda' else 'gloo'}, ping-pong, median of {len(links)}): latency "
            f"{link.latency * 1e6:.1f} us, bandwidth {link.bandwidth / 1e9:.2f} GB/s")
    else:
        link = Link(0.0, 1e18)
    say("")
    say(f"{'N':>2} {'m':>2}  {'BP':>7} {'DFA':>7} {'eager':>7}  {'gain':>5} {'eager':>5}  "
        f"{'sim BP':>7} {'err':>6} {'sim DFA':>7} {'err':>6} {'sim eag':>7} {'err':>6}  {'review':>6}  {'bubble':>6}")
    model = mlp(args.depth, args.width)
    host = {}  # host seconds per micro-batch per stage that the block times leave out, from 1 stage
    for m in args.micro_batches:
        alone = step_times(shown[m], [], m, link, error_bytes[m])
        host[m] = {k: max(0.0, (measured[1][str(m)][k] - alone[k]) / m) if 1 in measured else 0.0 for k in METHODS}
    for n in args.stages:
        block_cuts = [c // 3 for c in measured[n]["cuts"]]  # module index -> block index (3 modules a block)
        for m in args.micro_batches:
            t = measured[n][str(m)]
            sim = step_times(shown[m], block_cuts, m, link, error_bytes[m], host[m])
            rev = reviewers(shown.get(1, shown[m]), n)
            errs = " ".join(f"{sim[k] * 1e3:7.1f} {(sim[k] - t[k]) / t[k]:+6.1%}" for k in METHODS)
            say(f"{n:>2} {m:>2}  {t['bp'] * 1e3:7.1f} {t['dfa'] * 1e3:7.1f} {t['dfa_eager'] * 1e3:7.1f}  "
                f"{t['bp'] / t['dfa']:5.2f} {t['bp'] / t['dfa_eager']:5.2f}  {errs}  {rev['bp'] / rev['dfa']:6.2f}  "
                f"{bubble(n, m):6.2f}")
    say("host time per micro-batch per stage that the block times leave out (from 1 stage; ms, BP / DFA / eager): "
        + ", ".join(f"m={m} " + " / ".join(f"{h[k] * 1e3:.2f}" for k in METHODS) for m, h in host.items()))
    say("(ms per step, median; gain: BP step / DFA step, on GPipe and on DFA's eager schedule; sim: the "
        "simulation's prediction from the block calibration, the measured link and the 1-stage host time (so "
        "its 1-stage rows match by construction; the others are predictions), err: (sim - measured) / measured; "
        "review: the reviewers' model (N f + N b) / (N f + b_dfa) with m = 1 and free links; bubble: GPipe's "
        "(N - 1) / (m + N - 1))")
    assert split_points(model, max(args.stages)) == measured[max(args.stages)]["cuts"]
    say("")
    base = shown[1] if 1 in shown else shown[min(shown)]
    first, hidden, head = base[0], base[1], base[-1]
    curve(say, "CPU cluster on Ethernet (this machine's block times)", hidden, first, head, Link(*args.ethernet),
          error_bytes.get(1, CLASSES * 4 * args.batch))
    cpu_step = sum(b.f + b.b_bp + b.u for b in [first, hidden, hidden, hidden, head])
    curve(say, f"GPUs on NVLink (block times scaled by {args.gpu_step_ms / 1e3 / cpu_step:.4f}: the 4x{args.width} "
          f"BP step {cpu_step * 1e3:.1f} ms here -> {args.gpu_step_ms} ms)", hidden, first, head, Link(*args.nvlink),
          error_bytes.get(1, CLASSES * 4 * args.batch), scale=args.gpu_step_ms / 1e3 / cpu_step)
    say(f"total {time.perf_counter() - started:.0f} s, load average {load_average()} at the end")
    say.close()


if __name__ == "__main__":
    main()
