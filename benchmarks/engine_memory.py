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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import Parser, TanhMLP, cases, positive_int  # noqa: E402

# model (a name from benchmarks/engine.py's cases, or the wide MLP below) -> methods
CASES = {"mlp-4x1024-tanh (batch 256)": ("bp", "dfa"),
         "mlp-4x2048-tanh (batch 1024)": ("bp", "dfa"),
         "nerf-8x256-relu-skip (4096 points)": ("bp", "dfa"),
         "lm-transformer-4x256 (16 x 64 tokens, error at the decoder input)": ("bp", "dfa", "dfa-micro")}
WIDE = "mlp-4x2048-tanh (batch 1024)"  # the compute-bound end, where holding activations shows most


def child(case: str, method_name: str, steps: int) -> None:
    import torch
    import torch.nn.functional as F

    from dfabench.harness.capture import training_step
    from dfabench.methods import create

    torch.set_num_threads(2)
    cpu = torch.device("cpu")
    if case == WIDE:
        g = torch.Generator().manual_seed(0)
        x, labels = torch.randn(1024, 784, generator=g), torch.randint(0, 10, (1024,), generator=g)
        build, loss = (lambda: TanhMLP(width=2048)), (lambda out: F.cross_entropy(out, labels))
    else:
        build, x, loss = next((b, x, lf) for name, b, x, lf, _, _ in cases(cpu, sweep=False) if name == case)
    torch.manual_seed(0)
    model = build()
    method = create(method_name)
    method.prepare(model, lambda: model(x), seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    step = training_step(model, method, opt, lambda m, b: m(b), lambda o, b: loss(o), None, cpu, capture=False)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(steps):
        step(x)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)


def main():
    parser = Parser(prog="engine_memory.py", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=positive_int, default=5, help="SGD steps per process (default 5)")
    parser.add_argument("--out", help="also write the output to this file")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "METHOD"), help=argparse.SUPPRESS)
    args = parser.checked(parser.parse_args())
    if args.child:
        child(*args.child, args.steps)
        return
    env = {**os.environ, "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536", "OMP_NUM_THREADS": "2"}
    lines = [f"peak resident memory growth over {args.steps} SGD steps from the built model, MB "
             "(each in a fresh process; glibc maps blocks of 64 KiB and up on their own)"]
    print(lines[0], flush=True)
    for case, methods in CASES.items():
        peaks = {}
        for method_name in methods:
            done = subprocess.run([sys.executable, __file__, "--child", case, method_name, "--steps",
                                   str(args.steps)], env=env, capture_output=True, text=True, check=True)
            peaks[method_name] = float(done.stdout.strip().splitlines()[-1])
        line = f"{case:66s} " + "  ".join(f"{m} {v:7.1f}" for m, v in peaks.items()) + "   " + "  ".join(
            f"{m}/bp {v / peaks['bp']:.2f}" for m, v in peaks.items() if m != "bp")
        lines.append(line)
        print(line, flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
