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
from engine import TinyDFAModel, TinyTransformer  # noqa: E402

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


def test_tinydfa_reaches_every_transformer_block():
    torch.set_default_dtype(torch.float32)
    model = TinyDFAModel(TinyTransformer(vocab=50, d=16, heads=2, layers=2, context=8), batch_dims=(0, 1))
    tokens = torch.randint(0, 50, (2, 8))
    out = model(tokens)
    F.cross_entropy(out.reshape(-1, 50), tokens.reshape(-1)).backward()
    for block in model.model.blocks:
        assert block.linear1.weight.grad is not None and block.linear1.weight.grad.abs().sum() > 0
