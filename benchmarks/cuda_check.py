"""Check the CUDA graph step on a GPU: captured and eager steps must train alike, model by model.

    python benchmarks/cuda_check.py [--steps 6] [--out results/bench/cuda-check.txt]

The captured step (``capture: true``, ``dfabench run --compile``) is a CUDA graph on CUDA
(``harness/capture.py``). No CPU can run it, so tests/test_capture.py checks only the CPU's compiled
step; this script is the GPU's check, one command for a session that is lent a GPU:

1. for each model of benchmarks/engine.py (the 4x1024 MLP, the NeRF MLP, the LM Transformer) and each
   method (bp, dfa, and dfa-micro on the Transformer), the same initial model is trained ``--steps``
   steps eagerly and captured, with the suite's own capturable Adam (``harness/optim.py``) and
   gradient clipping, on a new batch each step; every parameter must agree (rtol 1e-4, atol 1e-6:
   the graph replays the eager kernels, so the difference is expected to be 0) and must have moved;
2. ``dfabench run 'mlp/digits/*' --method bp,dfa --scale smoke --device cuda``, eager and with
   ``--compile``, into temporary folders: every captured record must be ``ok`` and its test accuracy
   within 0.5 points of the eager one's.

It prints one line per check and exits 1 if any disagrees, 2 where there is no GPU.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import NeRFMLP, PaperLM, Parser, TanhMLP, positive_int  # noqa: E402

from dfabench.harness.capture import CudaGraphStep, training_step  # noqa: E402
from dfabench.harness.optim import build_optimizer  # noqa: E402
from dfabench.methods import create  # noqa: E402
from dfabench.task import TrainHParams  # noqa: E402


def batches(name, steps, device):
    """A new batch per step, the same for every variant: (input, target) pairs and the loss."""
    g = torch.Generator().manual_seed(0)
    if name == "mlp":
        data = [(torch.randn(256, 784, generator=g), torch.randint(0, 10, (256,), generator=g)) for _ in range(steps)]
        return [(x.to(device), y.to(device)) for x, y in data], lambda out, b: F.cross_entropy(out, b[1])
    if name == "nerf":
        data = [(torch.randn(4096, 63, generator=g), torch.rand(4096, 4, generator=g)) for _ in range(steps)]
        return [(x.to(device), y.to(device)) for x, y in data], lambda out, b: F.mse_loss(out, b[1])
    data = [(torch.randint(0, 2000, (16, 64), generator=g), torch.randint(0, 2000, (16, 64), generator=g))
            for _ in range(steps)]

    def lm_loss(out, b):
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), b[1].reshape(-1))
    return [(x.to(device), y.to(device)) for x, y in data], lm_loss


MODELS = {"mlp": (TanhMLP, ("bp", "dfa")), "nerf": (NeRFMLP, ("bp", "dfa")), "lm": (PaperLM, ("bp", "dfa", "dfa-micro"))}


def trained(build, method_name, data, loss, device, captured):
    torch.manual_seed(0)
    model = build().to(device)
    method = create(method_name)
    method.prepare(model, lambda: model(data[0][0]), seed=0)
    hp = TrainHParams(optimizer="adam", lr=1e-3, epochs=1, batch_size=len(data[0][0]))
    optimizer = build_optimizer(model.parameters(), hp, capturable=captured)
    step = training_step(model, method, optimizer, lambda m, b: m(b[0]), loss, 0.5, device, captured)
    if captured:
        assert isinstance(step, CudaGraphStep), type(step)
    start = [p.detach().clone() for p in model.parameters()]
    losses = [float(step(batch)) for batch in data]
    return start, [p.detach().clone() for p in model.parameters()], losses


def check_models(steps, device, say) -> bool:
    ok = True
    for name, (build, methods) in MODELS.items():
        data, loss = batches(name, steps, device)
        for method_name in methods:
            start, eager, eager_losses = trained(build, method_name, data, loss, device, captured=False)
            _, graph, graph_losses = trained(build, method_name, data, loss, device, captured=True)
            worst = max(float((a - b).abs().max()) for a, b in zip(eager, graph))
            agree = all(torch.allclose(b, a, rtol=1e-4, atol=1e-6) for a, b in zip(eager, graph))
            moved = all(not torch.equal(a, s) for a, s in zip(eager, start))
            ok &= agree and moved
            say(f"{'ok  ' if agree and moved else 'FAIL'} {name:5s} {method_name:9s} {steps} steps: "
                f"largest parameter difference {worst:.3g}; every parameter moved: {moved}; "
                f"losses eager {eager_losses[0]:.4f} -> {eager_losses[-1]:.4f}, "
                f"captured {graph_losses[0]:.4f} -> {graph_losses[-1]:.4f}")
    return ok


def accuracies(folder: Path) -> dict[tuple[str, int], tuple[str, float | None]]:
    out = {}
    for path in sorted((folder / "runs").glob("*.json")):
        record = json.loads(path.read_text())
        test = (record.get("metrics") or {}).get("test") or {}
        out[(record["method"], record["seed"])] = (record["status"], test.get(record["primary_metric"]))
    return out


def check_cli(say) -> bool:
    from dfabench.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        eager, graph = Path(tmp) / "eager", Path(tmp) / "graph"
        command = ["run", "mlp/digits/*", "--method", "bp,dfa", "--scale", "smoke", "--seeds", "1", "--device", "cuda"]
        codes = (main([*command, "--results", str(eager)]), main([*command, "--compile", "--results", str(graph)]))
        a, b = accuracies(eager), accuracies(graph)
    ok = codes == (0, 0) and bool(a) and a.keys() == b.keys()
    for key in sorted(a):
        (status_a, acc_a), (status_b, acc_b) = a[key], b.get(key, ("missing", None))
        close = status_a == status_b == "ok" and acc_a is not None and acc_b is not None and abs(acc_a - acc_b) <= 0.005
        ok &= close
        say(f"{'ok  ' if close else 'FAIL'} dfabench run mlp/digits {key[0]} seed {key[1]}: eager {status_a} {acc_a}, "
            f"--compile {status_b} {acc_b}")
    if codes != (0, 0) or not a:
        say(f"FAIL dfabench run exit codes eager {codes[0]}, --compile {codes[1]}; {len(a)} records")
    return ok


def main():
    parser = Parser(prog="cuda_check.py", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=positive_int, default=6, help="training steps per variant")
    parser.add_argument("--out", help="also write the output to this file")
    args = parser.checked(parser.parse_args())
    if not torch.cuda.is_available():
        parser.error("torch sees no CUDA device; this check needs a GPU")
    out = open(args.out, "w") if args.out else None

    def say(text):
        print(text, flush=True)
        if out is not None:
            out.write(text + "\n")
            out.flush()

    device = torch.device("cuda")
    say(f"torch {torch.__version__}, {torch.cuda.get_device_name(device)}; captured (CUDA graph) against eager steps")
    ok = check_models(args.steps, device, say)
    ok &= check_cli(say)
    say("all agree" if ok else "DISAGREEMENT: see the FAIL lines")
    if out is not None:
        out.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
