"""Backpropagation: every feedback point is the identity; plain autograd."""
from .base import Method, autograd_loss
from .registry import register


@register
class BP(Method):
    name = "bp"
    summary = "backpropagation (the reference)"
    router_mode = "identity"

    def _backward(self, output, loss_fn, params):
        return autograd_loss(loss_fn(output), params)
