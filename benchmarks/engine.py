"""Time BP, DFA and the paper's TinyDFA training steps on the same models, in one process, and print the ratios.

    python benchmarks/engine.py [--device cpu|cuda] [--steps 50] [--threads 2] [--phases] [--no-sweep]
        [--no-capture] [--out results/bench/engine-cpu-2core.txt]

For each model (a 4x1024 tanh MLP, the NeRF MLP, a 4-block Transformer) and a width/batch sweep of
the MLP (its compute-bound end shows what the arithmetic allows), one line per variant:

* ``bp``, ``dfa``: the step dfabench's runner takes (``harness/capture.py``), eager;
* ``tinydfa``: the authors' library (vendored in ``benchmarks/tinydfa``, unmodified), eager: its cut
  hands on a leaf that requires grad, so autograd computes every block's input gradient and drops it;
* ``bp+cap``, ``dfa+cap``: the captured step (``capture: true``): a CUDA graph on CUDA,
  ``torch.compile`` on a CPU (the compile time is left out: warm-up steps compile);

with the median step time over ``--steps`` steps (all variants of a model alternate step by step, so
drift in machine load hits them alike), the ratios DFA/BP and DFA/TinyDFA, and memory: on CUDA the
peak allocated bytes of one step; on a CPU (no allocator statistics) the bytes of the activations
autograd saves for backward during one eager step (parameters excluded), the part a method can change
("-" for compiled steps, whose saved tensors live inside the compiled graph).

Targets (issue 23), CPU with 2 threads: DFA/BP <= 0.75 on the MLP and the NeRF MLP, <= 0.92 on the
Transformer, DFA/TinyDFA <= 0.8 on the MLP. ``--out FILE`` also writes everything printed to FILE.
The default run takes under 5 minutes on a quiet 2-core machine.
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
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dfabench.engine import FeedbackOutput, FeedbackPoint
from dfabench.harness.capture import training_step
from dfabench.methods import create

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tinydfa import DFA as TinyDFA, DFALayer  # noqa: E402  (vendored, benchmarks/tinydfa)


class TanhMLP(nn.Module):
    """4 hidden layers of 1024 tanh units (the paper's TinyDFA example), 784 -> 10."""

    def __init__(self, width=1024, depth=4, inputs=784, classes=10):
        super().__init__()
        layers, size = [], inputs
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.Tanh(), FeedbackPoint()]
            size = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return self.head(self.body(x))


class NeRFMLP(nn.Module):
    """8 x 256 ReLU layers with the input re-injected at layer 5; raw (rgb, sigma) output."""

    def __init__(self, inputs=63, width=256, depth=8, skip=4):
        super().__init__()
        self.skip = skip
        self.layers = nn.ModuleList(
            nn.Linear(inputs if i == 0 else width + (inputs if i == skip else 0), width) for i in range(depth))
        self.points = nn.ModuleList(FeedbackPoint() for _ in range(depth))
        self.out = nn.Linear(width, 4)

    def forward(self, x):
        h = x
        for i, (layer, point) in enumerate(zip(self.layers, self.points)):
            if i == self.skip:
                h = torch.cat([h, x], -1)
            h = point(F.relu(layer(h)))
        return self.out(h)


class TinyTransformer(nn.Module):
    """4 post-LN encoder blocks with a causal mask, d_model 256; a point after each block."""

    def __init__(self, vocab=2000, d=256, heads=4, layers=4, context=64):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(context, d))
        self.blocks = nn.ModuleList(nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True)
                                    for _ in range(layers))
        self.points = nn.ModuleList(FeedbackPoint() for _ in range(layers))
        self.head = nn.Linear(d, vocab)
        self.out = FeedbackOutput(batch_dims=2)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(context), persistent=False)

    def forward(self, tokens):
        h = self.embed(tokens) + self.pos[: tokens.shape[1]]
        for block, point in zip(self.blocks, self.points):
            h = point(block(h, src_mask=self.mask, is_causal=True))
        return self.out(self.head(h))


def saved_bytes(step, model) -> int:
    """Bytes of the activations autograd keeps for backward (parameters excluded: they exist anyway)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages = {}

    def pack(t):
        try:
            storage = t.untyped_storage()
            if storage.data_ptr() not in params:
                storages[storage.data_ptr()] = storage.nbytes()
        except (RuntimeError, NotImplementedError):
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(storages.values())


def cases(device, sweep: bool):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 784, generator=g)
    y = torch.randint(0, 10, (256,), generator=g)
    ce = lambda labels: (lambda out: F.cross_entropy(out, labels.to(device)))  # noqa: E731
    yield "mlp-4x1024-tanh (batch 256)", TanhMLP, x, ce(y), (0,)
    pts = torch.randn(4096, 63, generator=g)
    rgb = torch.rand(4096, 4, generator=g)
    yield "nerf-8x256-relu-skip (4096 points)", NeRFMLP, pts, lambda out: F.mse_loss(out, rgb.to(device)), (0,)
    tokens = torch.randint(0, 2000, (16, 64), generator=g)
    target = torch.randint(0, 2000, (16, 64), generator=g)
    yield ("transformer-4x256 (16 x 64 tokens)", TinyTransformer, tokens,
           lambda out: F.cross_entropy(out.reshape(-1, out.shape[-1]), target.to(device).reshape(-1)), (0, 1))
    if not sweep:
        return
    for width, batch in SWEEP:
        xs = torch.randn(batch, 784, generator=g)
        ys = torch.randint(0, 10, (batch,), generator=g)
        yield (f"sweep mlp-4x{width}-tanh (batch {batch})", lambda w=width: TanhMLP(width=w), xs, ce(ys), (0,))


# MLP width x batch: from launch-bound (small) to compute-bound (large)
SWEEP = [(256, 64), (1024, 64), (1024, 1024), (2048, 512)]


class TinyDFAModel(nn.Module):
    """The same model trained by TinyDFA: every FeedbackPoint swapped for a DFALayer, the output
    (the FeedbackOutput's input, else what the model returns) through TinyDFA's DFA module."""

    def __init__(self, model: nn.Module, batch_dims):
        super().__init__()
        self.model = model
        layers = []
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, FeedbackPoint):
                    layer = DFALayer()
                    setattr(parent, name, layer)
                    layers.append(layer)
        self.dfa = TinyDFA(layers, batch_dims=batch_dims)
        outputs = [m for m in model.modules() if isinstance(m, FeedbackOutput)]
        if outputs:
            outputs[0].forward = self.dfa  # the error is taken where our engine takes it
        self.at_output = bool(outputs)

    def forward(self, x):
        with contextlib.redirect_stdout(io.StringIO()):  # TinyDFA prints each point's shape on its first call
            out = self.model(x)
            return out if self.at_output else self.dfa(out)


def variants(build, x, loss_fn, batch_dims, device, capture: bool):
    """name -> (model, step(), model for memory or None)."""
    out = {}
    names = ["bp", "dfa"] + (["bp+cap", "dfa+cap"] if capture else [])
    for name in names:
        torch.manual_seed(0)
        model = build().to(device)
        method = create(name.split("+")[0])
        method.prepare(model, lambda m=model: m(x), seed=0)
        opt = torch.optim.SGD(model.parameters(), lr=1e-4)
        step = training_step(model, method, opt, lambda m, b: m(b), lambda o, b: loss_fn(o), None, device,
                             capture=name.endswith("+cap"))
        out[name] = (model, lambda step=step: step(x), None if name.endswith("+cap") else model)
    torch.manual_seed(0)
    wrapped = TinyDFAModel(build(), batch_dims).to(device)
    opt = torch.optim.SGD(wrapped.parameters(), lr=1e-4)

    def tiny_step(model=wrapped, opt=opt):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x))
        loss.backward()
        opt.step()
        return loss.detach()

    out["tinydfa"] = (wrapped, tiny_step, wrapped)
    return out


def bench(name, build, x, loss_fn, batch_dims, device, steps, capture, phases, say):
    x = x.to(device)

    def now():
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    runners = variants(build, x, loss_fn, batch_dims, device, capture)
    for _, step, _ in runners.values():  # warm-up (and compile)
        for _ in range(3):
            step()
    times = {m: [] for m in runners}
    for _ in range(steps):  # alternate the variants step by step: load drift hits all alike
        for m, (_, step, _) in runners.items():
            t0 = now()
            step()
            times[m].append((now() - t0) * 1000)
    median = {m: statistics.median(t) for m, t in times.items()}
    memory = {}
    for m, (model, step, eager_model) in runners.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            step()
            torch.cuda.synchronize()
            memory[m] = torch.cuda.max_memory_allocated(device) / 2**20
        elif eager_model is not None:
            memory[m] = saved_bytes(step, eager_model) / 2**20
    kind = "peak MB" if device.type == "cuda" else "saved MB"
    say(f"{name}")
    for m in runners:
        mem = f"{memory[m]:8.1f}" if m in memory else f"{'-':>8s}"
        say(f"    {m:8s} {median[m]:9.2f} ms   {kind} {mem}")
    ratios = [f"dfa/bp {median['dfa'] / median['bp']:.3f}", f"dfa/tinydfa {median['dfa'] / median['tinydfa']:.3f}"]
    if capture:
        ratios += [f"captured dfa/bp {median['dfa+cap'] / median['bp+cap']:.3f}",
                   f"dfa captured/eager {median['dfa+cap'] / median['dfa']:.3f}"]
    ratios.append(f"memory dfa/bp {memory['dfa'] / memory['bp']:.2f}")
    say("    " + "   ".join(ratios))
    if phases:
        say("    " + phase_line(runners, loss_fn, x, now, steps))
    return median


def phase_line(runners, loss_fn, x, now, steps) -> str:
    """Forward, backward and optimiser step of the eager bp and dfa steps, each timed on its own."""
    parts = {}
    for m in ("bp", "dfa"):
        model = runners[m][0]
        method = create(m)
        method.prepare(model, lambda: model(x), seed=0)
        opt = torch.optim.SGD(model.parameters(), lr=1e-4)
        split = []
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            t0 = now()
            output = model(x)
            t1 = now()
            method.backward(output, loss_fn)
            t2 = now()
            opt.step()
            split.append(((t1 - t0) * 1000, (t2 - t1) * 1000, (now() - t2) * 1000))
        parts[m] = [statistics.median(p[i] for p in split) for i in range(3)]
    return ("forward / backward / optimiser ms: " +
            "  ".join(f"{m} {' / '.join(f'{v:.2f}' for v in parts[m])}" for m in parts))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per variant (median of these)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2, the targets' setting)")
    parser.add_argument("--phases", action="store_true", help="also time forward, backward and optimiser step apart")
    parser.add_argument("--no-sweep", dest="sweep", action="store_false", help="skip the MLP width/batch sweep")
    parser.add_argument("--no-capture", dest="capture", action="store_false", help="skip the captured steps")
    parser.add_argument("--out", help="also write the output to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    lines = []

    def say(text=""):
        print(text, flush=True)
        lines.append(text)

    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    say(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()}), load average {load} at start; median of {args.steps} "
        "steps per variant, alternating step by step")
    started = time.perf_counter()
    for name, build, x, loss_fn, batch_dims in cases(device, args.sweep):
        bench(name, build, x, loss_fn, batch_dims, device, args.steps, args.capture, args.phases, say)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    say(f"total {time.perf_counter() - started:.0f} s, load average {load} at the end")
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
