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
