"""Shallow control: the graph is cut at every feedback point and nothing is injected.

Only the layers above the last point learn; the paper's control in every table.
"""
from .base import Method, autograd_loss
from .registry import register


@register
class Shallow(Method):
    name = "shallow"
    summary = "cut at every feedback point, inject nothing: only the top learns"
    router_mode = "cut"
    records = False

    def _backward(self, output, loss_fn, params):
        return autograd_loss(loss_fn(output), params)
