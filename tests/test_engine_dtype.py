"""The feedback matrix follows the model's dtype: a float64 or bfloat16 model trains under DFA, the
signals are in its precision, and the matrix is the same draw whatever the dtype."""
from __future__ import annotations

import pytest
import torch

from dfabench.engine.feedback import FEEDBACK_PREFIX
from dfabench.methods import create
from tiny_nets import tiny_mlp


def dfa_step(dtype, method_name="dfa", options=None):
    model = tiny_mlp().to(dtype)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(7, 5, generator=g).to(dtype), torch.randn(7, 2, generator=g).to(dtype)
    method = create(method_name, options)
    method.prepare(model, lambda: model(x), seed=0)
    model.zero_grad(set_to_none=True)
    method.backward(model(x), lambda out: ((out - y) ** 2).mean())
    return model, x, y


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("method_name, options", [("dfa", None), ("dfa", {"per_point": True}), ("dfa-sign", None)])
def test_dfa_trains_a_model_in_its_own_dtype(dtype, method_name, options):
    model, _, _ = dfa_step(dtype, method_name, options)
    buffers = [b for name, b in model.named_buffers() if name.startswith(FEEDBACK_PREFIX)]
    assert buffers and all(b.dtype == dtype for b in buffers)
    for p in model.parameters():
        assert p.grad is not None and p.grad.dtype == dtype and torch.isfinite(p.grad.float()).all()


def test_float64_dfa_gradient_is_the_hand_computation_in_float64():
    model, x, y = dfa_step(torch.float64)
    B = getattr(model, f"{FEEDBACK_PREFIX}default")
    W = [p.detach() for p in model.parameters()]
    h1 = torch.tanh(x @ W[0].T + W[1])
    h2 = torch.tanh(h1 @ W[2].T + W[3])
    e = 2 * (h2 @ W[4].T + W[5] - y) / y.numel()
    d1 = (e @ B[:, :4]) * (1 - h1 ** 2)
    torch.testing.assert_close(model[0].weight.grad, d1.T @ x, rtol=1e-12, atol=1e-14)


def test_the_matrix_is_the_same_draw_in_every_dtype():
    b32 = getattr(dfa_step(torch.float32)[0], f"{FEEDBACK_PREFIX}default")
    b64 = getattr(dfa_step(torch.float64)[0], f"{FEEDBACK_PREFIX}default")
    torch.testing.assert_close(b64.float(), b32)
