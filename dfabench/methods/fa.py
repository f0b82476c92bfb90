"""Feedback alignment (Lillicrap et al. 2016) and sign-symmetry (Liao, Leibo and Poggio 2016).

Layer-wise methods: the error still flows down layer by layer as in BP, but each ``nn.Linear``
(and ``nn.Conv2d``) sends ``delta B`` to its input instead of ``delta W``:

``fa``             ``B`` a fixed random matrix of ``W``'s shape, ``U[-1, 1) / sqrt(fan_in)`` (the scale of
                   PyTorch's default init of ``W``), a buffer ``dfabench_fa_feedback`` on the layer, so it is
                   saved with ``model.state_dict()``;
``sign-symmetry``  ``B = sign(W) / sqrt(fan_in)``, recomputed every step (no buffer).

The weight gradient itself is the true local one (``delta x^T``). Feedback points are ignored
(the router stays the identity). Without forking model code, ``prepare`` replaces ``forward`` on
each layer *instance* by one that calls a custom autograd function; ``release()`` restores it.
That forward follows the method's router: only in this method's own pass (mode identity, not
recording) does it use ``B``; the alignment probe's BP reference pass (identity with record=True)
gets the true ``W^T``, so alignment compares FA with BP and not with itself.

Where it does not apply: any other module that holds parameters between the input and the output
(attention's in-projection, a graph convolution, an LSTM) would transport its weights exactly, so
``prepare`` raises ``FAError`` naming the layer types rather than silently mixing in BP.
Parameters that need no weight transport are fine: element-wise ones (normalisation, PReLU) and
embeddings (nothing flows below them).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import Method, autograd_loss
from .registry import register

FA_BUFFER = "dfabench_fa_feedback"
# Modules whose own parameters need no transport of a weight matrix in the backward pass.
LOCAL_PARAMETER_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.PReLU, nn.Embedding, nn.EmbeddingBag,
)


class FAError(RuntimeError):
    pass


class _LinearFA(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, feedback):
        ctx.save_for_backward(x, feedback)
        ctx.has_bias = bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        x, feedback = ctx.saved_tensors
        grad_x = grad_out @ feedback if ctx.needs_input_grad[0] else None  # delta B, not delta W
        flat_out, flat_x = grad_out.reshape(-1, grad_out.shape[-1]), x.reshape(-1, x.shape[-1])
        grad_w = flat_out.T @ flat_x if ctx.needs_input_grad[1] else None
        grad_b = flat_out.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None


class _Conv2dFA(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, feedback, stride, padding, dilation, groups):
        ctx.save_for_backward(x, feedback)
        ctx.conf = (stride, padding, dilation, groups)
        ctx.has_bias, ctx.weight_shape = bias is not None, weight.shape
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_out):
        x, feedback = ctx.saved_tensors
        conf = ctx.conf
        grad_x = torch.nn.grad.conv2d_input(x.shape, feedback, grad_out, *conf) if ctx.needs_input_grad[0] else None
        grad_w = torch.nn.grad.conv2d_weight(x, ctx.weight_shape, grad_out, *conf) if ctx.needs_input_grad[1] else None
        grad_b = grad_out.sum((0, 2, 3)) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None, None, None, None, None


@register
class FA(Method):
    name = "fa"
    summary = "feedback alignment: a fixed random matrix per Linear/Conv2d layer replaces W^T (layer-wise)"
    router_mode = "identity"
    requires_tags = frozenset({"layerwise"})  # tasks declare it; prepare still checks the actual layers

    def prepare(self, model, probe_forward, seed):
        super().prepare(model, probe_forward, seed)
        layers, unsupported = [], set()
        for name, module in model.named_modules():
            if not any(p.requires_grad for p in module.parameters(recurse=False)):
                continue
            if type(module) in (nn.Linear, nn.Conv2d):
                if isinstance(module, nn.Conv2d) and (module.padding_mode != "zeros" or isinstance(module.padding, str)):
                    unsupported.add(f"{name} (Conv2d with padding {module.padding!r}/{module.padding_mode})")
                layers.append(module)
            elif not isinstance(module, LOCAL_PARAMETER_TYPES):
                unsupported.add(f"{name or 'model'} ({type(module).__name__})")
        if unsupported:
            raise FAError(f"{self.name} does not apply to layers of type other than nn.Linear / nn.Conv2d that "
                          f"carry weights: {', '.join(sorted(unsupported))}")
        if not layers:
            raise FAError(f"{self.name}: the model has no nn.Linear or nn.Conv2d layer")
        generator = torch.Generator().manual_seed(1_000_033 * (seed + 1) + 11)
        for module in layers:
            self._attach(module, generator)
        self.layers = layers

    def _attach(self, module: nn.Module, generator: torch.Generator) -> None:
        weight = module.weight
        fan_in = weight[0].numel()
        feedback = (torch.rand(weight.shape, generator=generator, dtype=weight.dtype) * 2 - 1) / math.sqrt(fan_in)
        module.register_buffer(FA_BUFFER, feedback.to(weight.device))
        module.forward = _FAForward(module, self.router)

    def release(self) -> None:
        """Give the layers their own forward back (the buffers stay: they are part of the record)."""
        for module in getattr(self, "layers", []):
            module.__dict__.pop("forward", None)
        if self.router is not None:
            self.router.detach_from()

    def _backward(self, output, loss_fn, params):
        return autograd_loss(loss_fn(output), params)


@register
class SignSymmetry(FA):
    name = "sign-symmetry"
    summary = "sign-symmetry: sign(W)/sqrt(fan_in) replaces W^T in every Linear/Conv2d layer (layer-wise)"

    def _attach(self, module, generator):
        module.forward = _FAForward(module, self.router, sign=True)


class _FAForward:
    """The forward set on a layer instance; a class (not a closure) so deepcopy and pickle follow the module."""

    def __init__(self, module: nn.Module, router, sign: bool = False):
        self.module, self.router, self.sign = module, router, sign

    def feedback(self) -> torch.Tensor:
        m = self.module
        if self.sign:
            return torch.sign(m.weight.detach()) / math.sqrt(m.weight[0].numel())
        return getattr(m, FA_BUFFER)

    def __call__(self, x):
        m = self.module
        if self.router.record or self.router.mode != "identity":
            # A pass that is not this method's training pass: the alignment probe's BP reference
            # (identity + record) and its segment discovery (cut) need the true W^T.
            return type(m).forward(m, x)
        if isinstance(m, nn.Conv2d):
            return _Conv2dFA.apply(x, m.weight, m.bias, self.feedback(), m.stride, m.padding, m.dilation, m.groups)
        return _LinearFA.apply(x, m.weight, m.bias, self.feedback())
