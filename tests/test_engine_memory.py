"""DFA's step frees each block's activations as its backward finishes, as BP's does.

DFA injects every block's signal in one engine call. Had the call (or the router's records) held the
block outputs h_i as tensors, all of them would live until the last block's backward: a higher peak
than BP's, whose chain frees each block's activations as it goes. The test watches the storage of the
top block's output (a weak reference, which does not keep it alive) from inside the backward pass of the
bottom block, the last one the engine runs: by then that storage must be gone, under BP and under DFA.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef

from dfabench.engine import FeedbackPoint
from dfabench.methods import create


def deep_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 32), nn.Tanh(), FeedbackPoint(), nn.Linear(32, 32), nn.Tanh(), FeedbackPoint(),
                         nn.Linear(32, 32), nn.Tanh(), FeedbackPoint(), nn.Linear(32, 3))


@pytest.mark.parametrize("method_name", ["bp", "dfa", "dfa-sign", "drtp"])
def test_the_top_blocks_output_is_freed_before_the_bottom_blocks_backward(method_name):
    model = deep_mlp()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
    method = create(method_name)
    method.prepare(model, lambda: model(x), seed=0)

    top: list[StorageWeakRef] = []
    model[8].register_forward_pre_hook(lambda module, args: top.append(StorageWeakRef(args[0].untyped_storage())))
    alive_then: list[bool] = []
    model[0].weight.register_hook(lambda grad: alive_then.append(not top[-1].expired()))

    method.backward(model(x), lambda out: F.cross_entropy(out, y))
    assert alive_then == [False]  # the hook ran once, after the top block's activations were freed
    assert model[0].weight.grad is not None and model[0].weight.grad.abs().sum() > 0


def test_a_torch_without_edge_roots_gets_the_same_gradients_from_tensor_roots(monkeypatch):
    """The package admits torch 2.2, whose engine may not take graph edges as roots: then the roots are
    the tensors themselves (the higher peak of before), and the gradients are the same bits."""
    from dfabench.engine import projection

    def grads():
        model = deep_mlp()
        x = torch.randn(16, 6, generator=torch.Generator().manual_seed(1))
        method = create("dfa")
        method.prepare(model, lambda: model(x), seed=0)
        method.backward(model(x), lambda out: out.square().mean())
        return [p.grad.clone() for p in model.parameters()]

    assert projection.edge_roots_supported()  # this torch takes edges
    with_edges = grads()
    monkeypatch.setattr(projection, "edge_roots_supported", lambda: False)
    with_tensors = grads()
    assert all(torch.equal(a, b) for a, b in zip(with_edges, with_tensors))
    assert all(g.abs().sum() > 0 for g in with_edges)
