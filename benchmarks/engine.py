"""Time BP and DFA training steps on the same models, in one process, and print the ratios.

    python benchmarks/engine.py [--device cpu|cuda] [--steps 50] [--threads N] [--phases]

One line per model: median step time under BP and DFA, their ratio, and memory. Steps of the two
methods alternate one by one so that drift in machine load hits both alike. Memory: on CUDA the
peak allocated bytes of a step; on a CPU (where PyTorch has no allocator statistics) the bytes of the
activations autograd saves for the backward pass during one step (parameters excluded), the part
a method can change.

Targets (DESIGN.md / issue 2): DFA/BP <= 0.75 on the MLPs (arithmetic limit ~2/3: forward + dW,
no dX) and DFA memory <= BP.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from dfabench.engine import FeedbackOutput, FeedbackPoint
from dfabench.methods import create


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


def cases(device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 784, generator=g)
    y = torch.randint(0, 10, (256,), generator=g)
    yield "mlp-4x1024-tanh (batch 256)", TanhMLP, x, lambda out: F.cross_entropy(out, y.to(device))
    pts = torch.randn(4096, 63, generator=g)
    rgb = torch.rand(4096, 4, generator=g)
    yield "nerf-8x256-relu-skip (4096 points)", NeRFMLP, pts, lambda out: F.mse_loss(out, rgb.to(device))
    tokens = torch.randint(0, 2000, (16, 64), generator=g)
    target = torch.randint(0, 2000, (16, 64), generator=g)
    yield ("transformer-4x256 (16 x 64 tokens)", TinyTransformer, tokens,
           lambda out: F.cross_entropy(out.reshape(-1, out.shape[-1]), target.to(device).reshape(-1)))


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


def bench(name, build, x, loss_fn, device, steps, phases=False):
    x = x.to(device)

    def now():
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    runners, models = {}, {}
    for method_name in ("bp", "dfa"):
        torch.manual_seed(0)
        model = build().to(device)
        method = create(method_name)
        method.prepare(model, lambda m=model: m(x), seed=0)
        opt = torch.optim.SGD(model.parameters(), lr=1e-4)

        def step(model=model, method=method, opt=opt, split=None):
            opt.zero_grad(set_to_none=True)
            t0 = now() if split is not None else 0.0
            output = model(x)
            t1 = now() if split is not None else 0.0
            method.backward(output, loss_fn)
            t2 = now() if split is not None else 0.0
            opt.step()
            if split is not None:
                split.append(((t1 - t0) * 1000, (t2 - t1) * 1000, (now() - t2) * 1000))

        runners[method_name] = step
        models[method_name] = model
    for step in runners.values():  # warm-up
        for _ in range(3):
            step()
    times = {m: [] for m in runners}
    for _ in range(steps):  # alternate the methods step by step: load drift hits both alike
        for m, step in runners.items():
            t0 = now()
            step()
            times[m].append((now() - t0) * 1000)
    memory = {}
    for m, step in runners.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            step()
            torch.cuda.synchronize()
            memory[m] = torch.cuda.max_memory_allocated(device) / 2**20
        else:
            memory[m] = saved_bytes(step, models[m]) / 2**20
    bp, dfa = statistics.median(times["bp"]), statistics.median(times["dfa"])
    kind = "peak MB" if device.type == "cuda" else "activations saved MB"
    print(f"{name:38s} bp {bp:8.2f} ms  dfa {dfa:8.2f} ms  dfa/bp {dfa / bp:5.2f}  "
          f"{kind}: bp {memory['bp']:7.1f} dfa {memory['dfa']:7.1f} ({memory['dfa'] / memory['bp']:.2f})", flush=True)
    if phases:  # separate steps, each phase timed on its own (the syncs cost a little on a GPU)
        split = {m: [] for m in runners}
        for _ in range(steps):
            for m, step in runners.items():
                step(split=split[m])
        parts = {m: [statistics.median(p[i] for p in split[m]) for i in range(3)] for m in split}
        print(f"{'':38s} forward / backward / optimiser ms: bp {' / '.join(f'{v:.2f}' for v in parts['bp'])}"
              f"  dfa {' / '.join(f'{v:.2f}' for v in parts['dfa'])}", flush=True)
    return dfa / bp


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per method")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's)")
    parser.add_argument("--phases", action="store_true", help="also time forward, backward and optimiser step apart")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads; "
          f"median of {args.steps} steps per method, alternating step by step", flush=True)
    for name, build, x, loss_fn in cases(device):
        bench(name, build, x, loss_fn, device, args.steps, args.phases)


if __name__ == "__main__":
    main()
