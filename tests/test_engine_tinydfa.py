"""Our DFA against the paper's own library (TinyDFA, vendored in benchmarks/tinydfa) given the same matrix.

TinyDFA keeps the raw uniform U and divides the projection by sqrt(l_max); our global rule stores
B = U / sqrt(l_max). With TinyDFA's matrix set to U = B sqrt(l_max), every gradient agrees (float64;
the two round the scale at different places, so close, not bit-equal). This also checks the wrapper
benchmarks/engine.py times TinyDFA with.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dfabench.engine.feedback import FEEDBACK_PREFIX
from dfabench.methods import create
from tiny_nets import double_precision, tiny_mlp  # noqa: F401  (fixture)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from engine import TinyDFAModel  # noqa: E402

pytestmark = pytest.mark.usefixtures("double_precision")


def test_tinydfa_gives_our_dfa_gradients_on_the_same_matrix():
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(9, 5, generator=g), torch.randint(0, 2, (9,), generator=g)
    ours = tiny_mlp()
    method = create("dfa")
    method.prepare(ours, lambda: ours(x), seed=0)
    ours.zero_grad(set_to_none=True)
    method.backward(ours(x), lambda out: F.cross_entropy(out, y))
    B = getattr(ours, f"{FEEDBACK_PREFIX}default")

    theirs = TinyDFAModel(tiny_mlp(), batch_dims=(0,))
    theirs(x)  # TinyDFA draws its matrix at the first forward
    theirs.dfa.feedback_matrix = B * math.sqrt(B.shape[1])
    theirs.zero_grad(set_to_none=True)
    F.cross_entropy(theirs(x), y).backward()
    ours_grads = [p.grad for p in ours.parameters()]
    their_grads = [p.grad for p in theirs.model.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in ours_grads)
    for a, b in zip(ours_grads, their_grads):
        torch.testing.assert_close(a, b)


def test_tinydfa_gives_our_micro_dfa_gradients_on_the_lm_transformer():
    """The Transformer benchmarks/engine.py times (the suite's LM model, error at the decoder input):
    TinyDFA at every point is our micro DFA, parameter by parameter, given the same matrix."""
    from dfabench.tasks.lm.models import PaperTransformer

    def build():
        torch.manual_seed(0)
        return PaperTransformer(vocab_size=50, context=8, layers=2, d_model=16, heads=2, d_ff=32, dropout=0.0)

    tokens = torch.randint(0, 50, (3, 8), generator=torch.Generator().manual_seed(1))

    def loss(out):
        return F.cross_entropy(out.reshape(-1, 50), tokens.reshape(-1))

    ours = build()
    method = create("dfa-micro")
    method.prepare(ours, lambda: ours(tokens), seed=0)
    method.backward(ours(tokens), loss)
    B = getattr(ours, f"{FEEDBACK_PREFIX}default")
    assert B.shape == (16, 32)  # d_model x the widest point (the FFN's hidden layer)

    theirs = TinyDFAModel(build(), batch_dims=(0, 1))
    theirs(tokens)
    theirs.dfa.feedback_matrix = B * math.sqrt(B.shape[1])
    theirs.zero_grad(set_to_none=True)
    loss(theirs(tokens)).backward()
    for (name, a), b in zip(ours.named_parameters(), theirs.model.parameters()):
        assert a.grad is not None and a.grad.abs().sum() > 0, name
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_the_benchmarks_split_injection_gives_the_one_call_injections_gradients():
    """benchmarks/engine.py --split deals DFA's independent block backward passes to two host threads;
    every parameter must get the gradient the engine's one injection call gives (float64: to rounding,
    since one intra-op thread sums in another order), and the thread count is restored."""
    import engine
    from dfabench.tasks.lm.models import PaperTransformer

    tokens = torch.randint(0, 50, (3, 8), generator=torch.Generator().manual_seed(1))

    def grads(split: bool):
        torch.manual_seed(0)
        model = PaperTransformer(vocab_size=50, context=8, layers=3, d_model=16, heads=2, d_ff=32, dropout=0.0)
        method = create("dfa")
        method.prepare(model, lambda: model(tokens), seed=0)

        def step():
            model.zero_grad(set_to_none=True)
            method.backward(model(tokens), lambda out: F.cross_entropy(out.reshape(-1, 50), tokens.reshape(-1)))
        (engine.split_dfa_step(step) if split else step)()
        return {name: p.grad for name, p in model.named_parameters()}

    threads = torch.get_num_threads()
    one_call = grads(False)
    jobs_before = engine._worker.jobs_done if engine._worker is not None else 0
    split = grads(True)
    assert engine._worker.jobs_done == jobs_before + 1  # the worker thread ran its share of the roots
    assert torch.get_num_threads() == threads
    for name, grad in one_call.items():
        assert grad is not None and grad.abs().sum() > 0, name
        torch.testing.assert_close(split[name], grad, msg=name)


@pytest.mark.parametrize("method_name", ["bp", "dfa"])
def test_the_benchmarks_hand_written_mlp_step_computes_the_engines_gradients(method_name):
    """benchmarks/engine.py times the engine's MLP steps against hand-written ones as the floor any
    implementation has: that floor must be the same computation, gradient for gradient."""
    import engine

    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(7, 8, generator=g), torch.randint(0, 3, (7,), generator=g)
    torch.manual_seed(0)
    model = engine.TanhMLP(width=16, depth=4, inputs=8, classes=3)
    method = create(method_name)
    method.prepare(model, lambda: model(x), seed=0)
    method.backward(model(x), lambda out: F.cross_entropy(out, y))
    B = getattr(model, f"{FEEDBACK_PREFIX}default", None)
    hand = engine.HandWrittenMLP(model, B).gradients(x, y, method_name)
    layers = [m for m in model.body if isinstance(m, torch.nn.Linear)] + [model.head]
    ours = [layer.weight.grad for layer in layers] + [layer.bias.grad for layer in layers]
    assert len(hand) == len(ours) == 10
    for a, b in zip(ours, hand):
        assert a.abs().sum() > 0
        torch.testing.assert_close(b, a)
    if method_name == "dfa":  # and it is not BP's: the hidden layers get the projected error
        bp = engine.HandWrittenMLP(model, None).gradients(x, y, "bp")
        assert not torch.allclose(bp[0], hand[0])


@pytest.mark.parametrize("argv, says", [
    (["--repeat", "0"], "argument --repeat: 0 is below 1"),
    (["--steps", "x"], "argument --steps: 'x' is not a whole number"),
    (["--device", "tpu"], "--device tpu: use cpu or cuda"),
    (["--out", "{tmp}/missing/engine.txt"], "--out {tmp}/missing/engine.txt: folder {tmp}/missing does not exist"),
])
def test_the_engine_benchmark_refuses_bad_arguments_in_one_line_before_measuring(argv, says, tmp_path, capsys,
                                                                                monkeypatch):
    import engine

    out = tmp_path / "engine.txt"
    argv = [a.format(tmp=tmp_path) for a in argv]
    monkeypatch.setattr(sys, "argv", ["engine.py", *argv, *(["--out", str(out)] if "--out" not in argv else [])])
    with pytest.raises(SystemExit) as stop:
        engine.main()
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines() == [f"engine.py: error: {says.format(tmp=tmp_path)}"]
    assert not out.exists() and not (tmp_path / "missing").exists()
