"""Peak memory of BP's and DFA's training steps on a CPU, each in a fresh process, and the ratio.

    python benchmarks/engine_memory.py [--steps 5] [--out results/bench/engine-memory-cpu.txt]

A CPU has no allocator statistics (benchmarks/engine.py reports CUDA's peak allocated bytes on a GPU,
and on a CPU only the activations autograd saves). Here every (model, method) runs in its own process,
with glibc's allocator told to map every block of 64 KiB or more on its own (GLIBC_TUNABLES), so that
freed tensors leave the resident set at once and its high-water mark (getrusage's ru_maxrss) follows
the live tensors. The figure is that mark's growth over ``--steps`` SGD steps, from the freshly built
model (parameters, and DFA's feedback matrix, already there): the gradients, the activations and
whatever the backward pass holds at its peak. The models are benchmarks/engine.py's.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
from pathlib import Path

CASES = {"mlp-4x1024-tanh (batch 256)": ("mlp", ("bp", "dfa")),
         "mlp-4x2048-tanh (batch 1024)": ("mlp-wide", ("bp", "dfa")),
         "nerf-8x256-relu-skip (4096 points)": ("nerf", ("bp", "dfa")),
         "lm-transformer-4x256 (16 x 64 tokens)": ("lm", ("bp", "dfa", "dfa-micro"))}


def child(model_name: str, method_name: str, steps: int) -> None:
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from engine import NeRFMLP, PaperLM, TanhMLP

    from dfabench.harness.capture import training_step
    from dfabench.methods import create

    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(0)
    if model_name.startswith("mlp"):
        wide = model_name == "mlp-wide"
        batch = 1024 if wide else 256
        build = (lambda: TanhMLP(width=2048)) if wide else TanhMLP
        x, target = torch.randn(batch, 784, generator=g), torch.randint(0, 10, (batch,), generator=g)
        loss = lambda out: F.cross_entropy(out, target)  # noqa: E731
    elif model_name == "nerf":
        build, x, target = NeRFMLP, torch.randn(4096, 63, generator=g), torch.rand(4096, 4, generator=g)
        loss = lambda out: F.mse_loss(out, target)  # noqa: E731
    else:
        build = PaperLM
        x, target = torch.randint(0, 2000, (16, 64), generator=g), torch.randint(0, 2000, (16, 64), generator=g)
        loss = lambda out: F.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1))  # noqa: E731
    torch.manual_seed(0)
    model = build()
    method = create(method_name)
    method.prepare(model, lambda: model(x), seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    step = training_step(model, method, opt, lambda m, b: m(b), lambda o, b: loss(o), None, torch.device("cpu"),
                         capture=False)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(steps):
        step(x)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.steps)
        return
    env = {**os.environ, "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536", "OMP_NUM_THREADS": "2"}
    lines = [f"peak resident memory growth over {args.steps} SGD steps from the built model, MB "
             "(each in a fresh process; glibc maps blocks of 64 KiB and up on their own)"]
    print(lines[0], flush=True)
    for label, (model_name, methods) in CASES.items():
        peaks = {}
        for method_name in methods:
            done = subprocess.run([sys.executable, __file__, "--child", model_name, method_name, "--steps",
                                   str(args.steps)], env=env, capture_output=True, text=True, check=True)
            peaks[method_name] = float(done.stdout.strip().splitlines()[-1])
        line = f"{label:40s} " + "  ".join(f"{m} {v:7.1f}" for m, v in peaks.items()) + "   " + "  ".join(
            f"{m}/bp {v / peaks['bp']:.2f}" for m, v in peaks.items() if m != "bp")
        lines.append(line)
        print(line, flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
