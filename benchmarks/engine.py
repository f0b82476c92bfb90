"""Time BP, DFA and the paper's TinyDFA training steps on the same models, in one process, and print the ratios.

    python benchmarks/engine.py [--device cpu|cuda] [--steps 50] [--repeat 1] [--threads 2] [--phases]
        [--no-sweep] [--no-capture] [--streams] [--split] [--only PARTS] [--hand-only]
        [--out results/bench/engine-cpu-2core.txt]

For each model (a 4x1024 tanh MLP, the NeRF MLP, the suite's 4-block LM Transformer) and a
width/batch sweep of the MLP (its compute-bound end shows what the arithmetic allows), one line per
variant:

* ``bp``, ``dfa``: the step dfabench's runner takes (``harness/capture.py``), eager; on the
  Transformer also ``dfa-micro``, the paper's micro DFA (feedback after norm1 and the FFN's ReLU as
  well as at block outputs), whose cuts skip most of the block's input gradients, where macro ``dfa``
  skips only the attention input's;
* ``tinydfa``: the authors' library (vendored in ``benchmarks/tinydfa``, unmodified), eager: its cut
  hands on a leaf that requires grad, so autograd computes every block's input gradient and drops it;
* ``bp+cap``, ``dfa+cap``: the captured step (``capture: true``): a CUDA graph on CUDA,
  ``torch.compile`` on a CPU (the compile time is left out: warm-up steps compile); not in the sweep;

* ``dfa+str`` (``--streams``, CUDA only): DFA with every block on its own CUDA stream;
* ``dfa+split`` (``--split``, CPU only): DFA's independent block backward passes shared between two
  host threads of one intra-op thread each, where BP's chain runs every product on both threads;

with the median step time over ``--steps`` steps (all variants of a model alternate step by step, so
drift in machine load hits them alike; ``--repeat N`` does that N times, prints each ratio's N values
and reports their median, since this VM's speed drifts over minutes), the ratios DFA/BP and
DFA/TinyDFA, the ratio of the steps' FLOPs (torch's FlopCounterMode: what the arithmetic alone allows;
a time ratio above it is host overhead), and memory: on CUDA the peak allocated bytes of one step; on
a CPU (no allocator statistics) the bytes of the activations autograd saves for backward during one
eager step (parameters excluded), the part a method can change ("-" for compiled steps, whose saved
tensors live inside the compiled graph).

Two lines then time the batched products only DFA could use: the per_point projection as four
products against one product of the side-by-side matrices, and the MLP's three equal-shaped hidden
weight gradients as three products against one ``torch.bmm``. A last line (when the 4x1024 MLP is
run) sets the engine's BP and DFA steps against the same steps written by hand with plain tensor ops
(``HandWrittenMLP``; tested to compute the engine's gradients): how close the engine is to the work
both methods must do, and the DFA/BP ratio any implementation would get on this machine.

Targets (issue 23), CPU with 2 threads: DFA/BP <= 0.75 on the MLP and the NeRF MLP, <= 0.92 on the
Transformer, DFA/TinyDFA <= 0.8 on the MLP. (Macro DFA's FLOPs on the Transformer are 0.95 of BP's: the
0.92 is reachable only by micro DFA.) ``--out FILE`` also writes everything printed to FILE.
The default run takes about 3 minutes on a quiet 2-core machine (175 s at def60f8; with ``--split``,
which adds a variant to each model, 216 s at d74b28e, 311 s at 169602b on a slower day);
``--repeat N`` multiplies the timed part by N.
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
from dfabench.engine.feedback import FEEDBACK_PREFIX
from dfabench.harness.capture import training_step
from dfabench.engine.projection import inject as plain_inject
from dfabench.methods import create
from dfabench.methods import dfa as dfa_module

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


def PaperLM() -> nn.Module:
    from dfabench.tasks.lm.models import PaperTransformer

    return PaperTransformer(vocab_size=2000, context=64, layers=4, d_model=256, heads=4, d_ff=1024, dropout=0.0)


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


# The DFA methods each model is timed with; the last one uses every feedback point, as TinyDFA does.
DFA_ONLY = ("dfa",)


def cases(device, sweep: bool):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 784, generator=g)
    y = torch.randint(0, 10, (256,), generator=g)
    ce = lambda labels: (lambda out: F.cross_entropy(out, labels.to(device)))  # noqa: E731
    yield "mlp-4x1024-tanh (batch 256)", TanhMLP, x, ce(y), (0,), DFA_ONLY
    pts = torch.randn(4096, 63, generator=g)
    rgb = torch.rand(4096, 4, generator=g)
    yield ("nerf-8x256-relu-skip (4096 points)", NeRFMLP, pts, lambda out: F.mse_loss(out, rgb.to(device)), (0,),
           DFA_ONLY)
    tokens = torch.randint(0, 2000, (16, 64), generator=g)
    target = torch.randint(0, 2000, (16, 64), generator=g)
    # The Transformer the suite trains (tasks/lm: the authors' post-LN model, the error taken at the
    # decoder input as their code does), by macro DFA (block outputs) and micro DFA (also after norm1
    # and the FFN's ReLU); TinyDFA, given every point, is micro DFA's peer
    yield ("lm-transformer-4x256 (16 x 64 tokens, error at the decoder input)", PaperLM, tokens,
           lambda out: F.cross_entropy(out.reshape(-1, out.shape[-1]), target.to(device).reshape(-1)), (0, 1),
           ("dfa", "dfa-micro"))
    if not sweep:
        return
    for width, batch in SWEEP:
        xs = torch.randn(batch, 784, generator=g)
        ys = torch.randint(0, 10, (batch,), generator=g)
        yield (f"sweep mlp-4x{width}-tanh (batch {batch})", lambda w=width: TanhMLP(width=w), xs, ce(ys), (0,),
               DFA_ONLY)


# MLP width x batch: from launch-bound (small) to compute-bound (large)
SWEEP = [(256, 64), (1024, 64), (1024, 1024), (2048, 256)]


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
        outputs = [(parent, name) for parent in model.modules() for name, child in parent.named_children()
                   if isinstance(child, FeedbackOutput)]
        for parent, name in outputs:  # the error is taken where our engine takes it
            setattr(parent, name, self.dfa)
        self.at_output = bool(outputs)

    def forward(self, x):
        with contextlib.redirect_stdout(io.StringIO()):  # TinyDFA prints each point's shape on its first call
            out = self.model(x)
            return out if self.at_output else self.dfa(out)


def streamed_dfa_step(model, method, opt, x, loss_fn, device, streams=4):
    """DFA with each block on its own CUDA stream (CUDA only; not in the engine until it measurably helps).

    Autograd runs each backward op on the stream its forward op ran on, so switching to a new stream at
    every cut during the forward puts each block's backward on its own stream as well: the one
    injection call then queues the blocks' independent backward passes where the GPU can overlap
    them, while BP's chain cannot."""
    pool = [torch.cuda.Stream(device) for _ in range(streams)]
    router, plain = method.router, method.router.at_point
    turn = [0]

    def at_point(point, h):
        out = plain(point, h)
        if out is not h:  # a cut: the block above runs on the next stream
            stream = pool[turn[0] % len(pool)]
            turn[0] += 1
            stream.wait_stream(torch.cuda.current_stream(device))
            out.record_stream(stream)  # allocated on the previous stream, used on this one
            torch.cuda.set_stream(stream)
        return out

    router.at_point = at_point

    def step():
        default = torch.cuda.current_stream(device)
        opt.zero_grad(set_to_none=True)
        output = model(x)
        default.wait_stream(torch.cuda.current_stream(device))
        torch.cuda.set_stream(default)
        method.backward(output, loss_fn)
        for stream in pool:  # the optimiser reads gradients the block streams wrote
            default.wait_stream(stream)
        opt.step()
        turn[0] = 0
    return step


class _OneThreadWorker:
    """A host thread that runs injections with one intra-op thread (set once, in that thread)."""

    def __init__(self):
        import queue
        import threading

        self.jobs, self.done = queue.Queue(), queue.Queue()
        self.jobs_done = 0
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        torch.set_num_threads(1)
        while True:
            roots, signals = self.jobs.get()
            try:
                plain_inject(roots, signals)
                self.jobs_done += 1
                self.done.put(None)
            except BaseException as err:  # handed to the caller, which raises it
                self.done.put(err)


_worker: _OneThreadWorker | None = None


def split_inject(roots, signals):
    """The injection's roots dealt alternately to this thread and the worker, each with one intra-op
    thread, run at once: the blocks' backward passes are independent under DFA, so they can overlap."""
    global _worker
    if _worker is None:
        _worker = _OneThreadWorker()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _worker.jobs.put((roots[1::2], signals[1::2]))
        plain_inject(roots[0::2], signals[0::2])
        err = _worker.done.get()
    finally:
        torch.set_num_threads(threads)
    if err is not None:
        raise err


def split_dfa_step(step):
    """DFA's step with ``split_inject`` in place of the engine's one-call injection (CPU only; not in the
    engine: it is not bit-identical to one thread's reductions, and it measurably helps only where the
    products are small)."""
    def run():
        dfa_module.inject = split_inject
        try:
            return step()
        finally:
            dfa_module.inject = plain_inject
    return run


def variants(build, x, loss_fn, batch_dims, device, capture: bool, dfas=DFA_ONLY, streams: bool = False,
             split: bool = False):
    """name -> (model, step(), model for memory or None)."""

    def prepared(method_name):
        torch.manual_seed(0)
        model = build().to(device)
        method = create(method_name)
        method.prepare(model, lambda: model(x), seed=0)
        return model, method, torch.optim.SGD(model.parameters(), lr=1e-4)

    def runner_step(model, method, opt, captured=False):
        step = training_step(model, method, opt, lambda m, b: m(b), lambda o, b: loss_fn(o), None, device,
                             capture=captured)
        return lambda: step(x)

    out = {}
    if streams and device.type == "cuda":
        model, method, opt = prepared("dfa")
        out["dfa+str"] = (model, streamed_dfa_step(model, method, opt, x, loss_fn, device), model)
    names = ["bp", *dfas] + ([f"{m}+cap" for m in ("bp", *dfas)] if capture else [])
    for name in names:
        model, method, opt = prepared(name.split("+")[0])
        out[name] = (model, runner_step(model, method, opt, name.endswith("+cap")),
                     None if name.endswith("+cap") else model)
    if split and device.type == "cpu":
        model, method, opt = prepared("dfa")
        out["dfa+split"] = (model, split_dfa_step(runner_step(model, method, opt)), model)
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


def step_flops(step) -> int:
    """FLOPs of one step as torch's FlopCounterMode counts them (matrix products, attention): what the
    arithmetic alone would make the ratio, against which the measured time ratio shows host overhead."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def clock(device):
    """perf_counter, after waiting for the GPU's queued work on CUDA."""
    def now():
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()
    return now


def say_runs(say, label, values, steps) -> None:
    """One line with a ratio's value in every repetition, sorted, and their median."""
    values = sorted(values)
    say(f"    {label} in {len(values)} runs of {steps} steps: " + " ".join(f"{v:.3f}" for v in values) +
        f"   (median {statistics.median(values):.3f})")


def alternate(steps_by_name, steps, now) -> dict[str, float]:
    """Median ms of each step over ``steps`` rounds, the steps alternating within a round, so that drift
    in machine load hits them alike."""
    times = {name: [] for name in steps_by_name}
    for _ in range(steps):
        for name, step in steps_by_name.items():
            t0 = now()
            step()
            times[name].append((now() - t0) * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


def bench(name, build, x, loss_fn, batch_dims, device, steps, capture, phases, say, dfas=DFA_ONLY, streams=False,
          split=False, repeat=1):
    x = x.to(device)
    capture = capture and not name.startswith("sweep")  # the sweep is about arithmetic: eager only

    now = clock(device)
    runners = variants(build, x, loss_fn, batch_dims, device, capture, dfas, streams, split)
    for _, step, _ in runners.values():  # warm-up (and compile)
        for _ in range(3):
            step()
    runs = [alternate({m: step for m, (_, step, _) in runners.items()}, steps, now) for _ in range(repeat)]
    median = {m: statistics.median(run[m] for run in runs) for m in runners}

    def ratio(a, b):
        """a/b: of the medians, or with repeats the median of the repetitions' ratios."""
        return statistics.median(run[a] / run[b] for run in runs)
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
        say(f"    {m:13s} {median[m]:9.2f} ms   {kind} {mem}")
    flops = {m: step_flops(runners[m][1]) for m in ("bp", *dfas)}
    for m in dfas:
        ratios = [f"{m}/bp {ratio(m, 'bp'):.3f}", f"flops {m}/bp {flops[m] / flops['bp']:.3f}"]
        if m == dfas[-1]:  # the one that, like TinyDFA, acts at every point
            ratios.append(f"{m}/tinydfa {ratio(m, 'tinydfa'):.3f}")
        if f"{m}+cap" in median:
            ratios += [f"captured {m}/bp {ratio(f'{m}+cap', 'bp+cap'):.3f}",
                       f"{m} captured/eager {ratio(f'{m}+cap', m):.3f}"]
        if m == "dfa" and "dfa+str" in median:
            ratios.append(f"streams dfa/bp {ratio('dfa+str', 'bp'):.3f}")
        if m == "dfa" and "dfa+split" in median:
            ratios.append(f"split dfa/bp {ratio('dfa+split', 'bp'):.3f}")
        ratios.append(f"memory {m}/bp {memory[m] / memory['bp']:.2f}")
        say("    " + "   ".join(ratios))
    if repeat > 1:
        for m in [d for d in runners if d not in ("bp", "tinydfa")]:
            say_runs(say, f"{m}/bp", [run[m] / run["bp"] for run in runs], steps)
    if phases:
        say("    " + phase_line(runners, loss_fn, x, now, steps, dfas))
    return median


def phase_line(runners, loss_fn, x, now, steps, dfas=DFA_ONLY) -> str:
    """Forward, backward and optimiser step of the eager bp and DFA steps, each timed on its own."""
    parts = {}
    for m in ("bp", *dfas):
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


def median_us(fn, calls, device) -> float:
    """Median wall time of ``fn()`` in microseconds over ``calls`` calls, after a short warm-up."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(times)


def apart_and_together(apart, together, calls, device) -> tuple[float, float, bool]:
    """Times of the separate products and the batched one, and whether they give the same bits."""
    equal = all(torch.equal(a, b) for a, b in zip(apart(), together()))
    return median_us(apart, calls, device), median_us(together, calls, device), equal


def projection_line(device, steps, say) -> None:
    """per_point feedback on the 4x1024 MLP: four products e B_i against one product with the B_i side by
    side (one GEMM for equal-shaped points), then sliced; and whether the slices are bit-equal."""
    g = torch.Generator().manual_seed(0)
    e = torch.randn(256, 10, generator=g).to(device)
    mats = [torch.randn(10, 1024, generator=g).to(device) for _ in range(4)]
    wide = torch.cat(mats, 1)

    def together():
        out = e @ wide
        return [out[:, i * 1024:(i + 1) * 1024] for i in range(4)]

    apart_us, together_us, equal = apart_and_together(lambda: [e @ B for B in mats], together, steps * 10, device)
    say(f"per_point projection, 4 points x 1024, batch 256, 10 outputs: 4 products {apart_us:.1f} us, "
        f"one stacked product {together_us:.1f} us ({together_us / apart_us:.2f}); bit-equal: {equal}")


def batched_weight_gradient_line(device, steps, say) -> None:
    """The 4x1024 MLP's three equal-shaped hidden weight gradients dW_i = delta_i^T h_i: three products
    (what autograd runs for DFA's independent blocks) against one batched product (torch.bmm), which only
    DFA could issue, since BP's chain hands block i its delta only after block i+1 is done."""
    g = torch.Generator().manual_seed(0)
    deltas = [torch.randn(256, 1024, generator=g).to(device) for _ in range(3)]
    inputs = [torch.randn(256, 1024, generator=g).to(device) for _ in range(3)]
    stacked_deltas, stacked_inputs = torch.stack(deltas).transpose(1, 2), torch.stack(inputs)
    apart_us, together_us, equal = apart_and_together(
        lambda: [d.t().mm(h) for d, h in zip(deltas, inputs)], lambda: torch.bmm(stacked_deltas, stacked_inputs),
        steps, device)
    say(f"hidden weight gradients of the 4x1024 MLP, batch 256: 3 products {apart_us / 1000:.2f} ms, one batched "
        f"product {together_us / 1000:.2f} ms ({together_us / apart_us:.2f}); bit-equal: {equal}")


class HandWrittenMLP:
    """The 4x1024 tanh MLP's SGD step written out by hand with plain tensor ops, no autograd: BP's
    (every layer's input gradient down the chain) and DFA's (the error projected once, then each
    layer's weight gradient alone). What any implementation of either must compute, so their ratio is
    what this machine allows DFA on this model, and the engine's steps can be set against them."""

    def __init__(self, model: TanhMLP, B: torch.Tensor, lr=1e-4):
        layers = [m for m in model.body if isinstance(m, nn.Linear)] + [model.head]
        self.weights = [layer.weight.detach().clone() for layer in layers]
        self.biases = [layer.bias.detach().clone() for layer in layers]
        self.B, self.lr = B, lr

    def _forward(self, x):
        hs = [x]
        for W, b in zip(self.weights[:-1], self.biases[:-1]):
            hs.append(torch.tanh(torch.addmm(b, hs[-1], W.t())))
        return hs, torch.addmm(self.biases[-1], hs[-1], self.weights[-1].t())

    def _update(self, grads):
        for param, grad in zip([*self.weights, *self.biases], grads):
            param.add_(grad, alpha=-self.lr)

    def step(self, x, labels, method: str):
        self._update(self.gradients(x, labels, method))

    def gradients(self, x, labels, method: str) -> list[torch.Tensor]:
        """Every weight's gradient, then every bias's, in the model's layer order."""
        hs, logits = self._forward(x)
        e = torch.softmax(logits, 1)  # dL/dlogits of the mean cross-entropy
        e[torch.arange(len(labels)), labels] -= 1
        e /= len(labels)
        dWs, dbs = [e.t().mm(hs[-1])], [e.sum(0)]
        if method == "bp":
            grad = e.mm(self.weights[-1])
            for i in range(len(self.weights) - 2, -1, -1):
                delta = grad * (1 - hs[i + 1] * hs[i + 1])
                dWs.insert(0, delta.t().mm(hs[i]))
                dbs.insert(0, delta.sum(0))
                if i > 0:  # the input needs no gradient
                    grad = delta.mm(self.weights[i])
        else:
            projected = e.mm(self.B)  # one product for every layer (all 1024 wide)
            for i in range(len(self.weights) - 2, -1, -1):
                delta = projected * (1 - hs[i + 1] * hs[i + 1])
                dWs.insert(0, delta.t().mm(hs[i]))
                dbs.insert(0, delta.sum(0))
        return [*dWs, *dbs]


def hand_written_line(device, steps, say, repeat=1) -> None:
    """The engine's BP and DFA steps on the 4x1024 MLP against the same steps written by hand,
    alternating step by step: engine/hand near 1 means the engine adds nothing over the arithmetic and
    element-wise work both methods must do, and hand DFA/BP is the floor for any implementation here."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 784, generator=g).to(device)
    y = torch.randint(0, 10, (256,), generator=g).to(device)
    runners = variants(TanhMLP, x, lambda out: F.cross_entropy(out, y), (0,), device, capture=False)
    steps_by_name = {name: runners[name][1] for name in ("bp", "dfa")}
    hand = HandWrittenMLP(TanhMLP().to(device), getattr(runners["dfa"][0], f"{FEEDBACK_PREFIX}default"))
    steps_by_name["hand bp"] = lambda: hand.step(x, y, "bp")
    steps_by_name["hand dfa"] = lambda: hand.step(x, y, "dfa")
    for step in steps_by_name.values():
        for _ in range(3):
            step()
    runs = [alternate(steps_by_name, steps, clock(device)) for _ in range(repeat)]
    ms = {name: statistics.median(run[name] for run in runs) for name in steps_by_name}
    say(f"hand-written steps of the 4x1024 MLP, batch 256: bp {ms['hand bp']:.2f} ms, dfa {ms['hand dfa']:.2f} ms, "
        f"dfa/bp {ms['hand dfa'] / ms['hand bp']:.3f}; the engine's bp {ms['bp']:.2f} ms "
        f"({ms['bp'] / ms['hand bp']:.3f} of hand), dfa {ms['dfa']:.2f} ms ({ms['dfa'] / ms['hand dfa']:.3f} of hand), "
        f"dfa/bp {ms['dfa'] / ms['bp']:.3f}")
    if repeat > 1:
        for label, (a, b) in {"hand dfa/bp": ("hand dfa", "hand bp"), "engine dfa/bp": ("dfa", "bp"),
                              "engine/hand bp": ("bp", "hand bp"), "engine/hand dfa": ("dfa", "hand dfa")}.items():
            say_runs(say, label, [run[a] / run[b] for run in runs], steps)


class Parser(argparse.ArgumentParser):
    """Bad arguments are one line and exit 2, as dfabench's own commands do (benchmarks share it)."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")

    def checked(self, args):
        """Refuse, before anything is measured, an --out whose folder is missing and a CUDA device torch
        cannot see."""
        out, device = getattr(args, "out", None), getattr(args, "device", "cpu")
        if out and not Path(out).resolve().parent.is_dir():
            self.error(f"--out {out}: folder {Path(out).resolve().parent} does not exist")
        if device.startswith("cuda") and not torch.cuda.is_available():
            self.error(f"--device {device}: torch sees no CUDA device")
        if not device.startswith(("cpu", "cuda")):
            self.error(f"--device {device}: use cpu or cuda")
        return args


class Output:
    """What a benchmark says: printed, and written line by line to ``path`` when given (so that a cut
    run keeps its part). Call it with a line; ``close()`` at the end."""

    def __init__(self, path: str | None):
        self.file = open(path, "w") if path else None

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        if self.file is not None:
            self.file.write(text + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: every timing file states them at its start and end."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is below 1")
    return value


def main():
    parser = Parser(prog="engine.py", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=positive_int, default=50, help="timed steps per variant (median of these)")
    parser.add_argument("--repeat", type=positive_int, default=1,
                        help="time the steps this many times and report the median of the medians")
    parser.add_argument("--threads", type=positive_int, default=2, help="CPU threads (default 2, the targets' setting)")
    parser.add_argument("--phases", action="store_true", help="also time forward, backward and optimiser step apart")
    parser.add_argument("--no-sweep", dest="sweep", action="store_false", help="skip the MLP width/batch sweep")
    parser.add_argument("--no-capture", dest="capture", action="store_false", help="skip the captured steps")
    parser.add_argument("--streams", action="store_true", help="CUDA: also DFA with every block on its own stream")
    parser.add_argument("--split", action="store_true",
                        help="CPU: also DFA with its block backward passes split between two one-thread host threads")
    parser.add_argument("--only", help="comma-separated parts of model names to run (e.g. mlp-4x1024,nerf)")
    parser.add_argument("--hand-only", action="store_true",
                        help="only the engine's steps against the hand-written ones (the engine-overhead target)")
    parser.add_argument("--out", help="also write the output to this file (line by line, so a cut run keeps its part)")
    args = parser.checked(parser.parse_args())
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    say = Output(args.out)
    load = load_average()
    say(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()}), load average {load} at start; median of {args.steps} "
        f"steps per variant, alternating step by step" + (f", {args.repeat} times" if args.repeat > 1 else ""))
    started = time.perf_counter()
    only = [part.strip() for part in args.only.split(",")] if args.only else None
    for name, build, x, loss_fn, batch_dims, dfas in [] if args.hand_only else cases(device, args.sweep):
        if only and not any(part in name for part in only):
            continue
        bench(name, build, x, loss_fn, batch_dims, device, args.steps, args.capture, args.phases, say, dfas,
              args.streams, args.split, args.repeat)
    if not args.hand_only:
        projection_line(device, args.steps, say)
        batched_weight_gradient_line(device, args.steps, say)
    if args.hand_only or not only or any(part in "mlp-4x1024-tanh" for part in only):
        hand_written_line(device, args.steps, say, args.repeat)
    say(f"total {time.perf_counter() - started:.0f} s, load average {load_average()} at the end")
    say.close()


if __name__ == "__main__":
    main()
