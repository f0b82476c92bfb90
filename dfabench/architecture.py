"""What a built network is, read off the network itself: the facts `dfabench explain` sets beside the
DFA−BP gap, so that none of them is a hand-written table.

One forward pass on one training batch with hooks (no router attached: every marker is the identity)
gives, in the order they run: each feedback point (its tag and feature width), each normalisation
module (LayerNorm, BatchNorm, GroupNorm, RMSNorm, ...), and the tensor the global error is taken at
(``FeedbackOutput``, or what the task's forward returns). From that:

* ``output_dim``: the features of one example at the error, i.e. the rank of DFA's feedback ``B e``;
* ``points``: tag -> the widths of the points with that tag, in order;
* ``norm``: the normalisation kinds found ("none" without any);
* ``placement``: "none"; "post" when every default-tag point receives a normalisation's output (the
  paper's post-LN Transformer); "pre" when norms sit only inside the blocks, so the points see
  un-normalised tensors (GPT-2's pre-LN residual stream; BatchNorm before an MLP's activation); with
  "+final" when a norm also runs after the last point and before the error (GPT-2's ``ln_f``);
* ``convolutions``: the number of convolution modules (torch's, and classes named ``*Conv``: GCNConv).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from .engine.points import DEFAULT_TAG, FeedbackOutput, FeedbackPoint, probe_forward
from .engine.router import feature_size

_TORCH_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm,
                *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()))


def is_norm(module: nn.Module) -> bool:
    """A normalisation layer: torch's, or a leaf class named like one (a library's own LayerNorm)."""
    if isinstance(module, _TORCH_NORMS):
        return True
    return not any(module.children()) and "Norm" in type(module).__name__


def is_conv(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.conv._ConvNd) or type(module).__name__.endswith("Conv")  # GCNConv, not GPT-2's Conv1D (a linear layer)


def first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        return next((t for v in value if (t := first_tensor(v)) is not None), None)
    if isinstance(value, dict):
        return next((t for v in value.values() if (t := first_tensor(v)) is not None), None)
    return None


def describe(model: nn.Module, forward: Callable[[], Any]) -> dict[str, Any]:
    """The facts above, from one call of ``forward`` (which runs ``model`` on a batch)."""
    events: list[tuple[str, Any]] = []  # ("norm", kind) / ("point", (tag, shape, normalised)) / ("output", ...)
    norm_outputs: list[torch.Tensor] = []  # kept alive so that identity comparisons mean something
    handles = []

    def on_norm(module, args, output):
        events.append(("norm", type(module).__name__))
        if isinstance(output, torch.Tensor):
            norm_outputs.append(output)

    def on_point(module, args):
        x = args[0]
        normalised = any(x is out for out in norm_outputs[-4:])
        events.append(("point", (module.tag, tuple(x.shape), normalised)))

    def on_output(module, args):
        events.append(("output", (tuple(args[0].shape), module.batch_dims)))

    for module in model.modules():
        if isinstance(module, FeedbackPoint):
            handles.append(module.register_forward_pre_hook(on_point))
        elif isinstance(module, FeedbackOutput):
            handles.append(module.register_forward_pre_hook(on_output))
        elif is_norm(module):
            handles.append(module.register_forward_hook(on_norm))
    try:
        result = probe_forward(model, forward)
    finally:
        for handle in handles:
            handle.remove()
    outputs = [value for kind, value in events if kind == "output"]
    if outputs:
        shape, batch_dims = outputs[0]
    else:  # no marker: the error is taken at what the forward returns, one example per row
        tensor = first_tensor(result)
        shape, batch_dims = (tuple(tensor.shape) if tensor is not None else ()), 1
    points: dict[str, list[int]] = {}
    for kind, value in events:
        if kind == "point":
            points.setdefault(value[0], []).append(feature_size(value[1], batch_dims))
    norms = sorted({value for kind, value in events if kind == "norm"})
    return {"output_dim": feature_size(shape, batch_dims) if shape else None, "points": points,
            "depth": len(points.get(DEFAULT_TAG, [])), "norm": ", ".join(norms) if norms else "none",
            "placement": _placement(events), "convolutions": sum(1 for m in model.modules() if is_conv(m)),
            "parameters": sum(p.numel() for p in model.parameters())}


def _placement(events: list[tuple[str, Any]]) -> str:
    if not any(kind == "norm" for kind, _ in events):
        return "none"
    default = [value for kind, value in events if kind == "point" and value[0] == DEFAULT_TAG]
    where = "post" if default and all(normalised for _, _, normalised in default) else "pre"
    last_point = max((i for i, (kind, value) in enumerate(events) if kind == "point" and value[0] == DEFAULT_TAG),
                     default=-1)
    after = any(kind == "norm" for kind, _ in events[last_point + 1:]) if last_point >= 0 else False
    return where + ("+final" if after and where == "pre" else "")


def at_run_time(model: nn.Module, forward: Callable[[], Any]) -> dict[str, Any]:
    """``describe`` for the runner: the facts of the model a run trains, on its probe batch, recorded in
    the record (``architecture``) so that `dfabench explain` never rebuilds a model. Every random
    generator a forward may draw from is restored after it (a NeRF forward samples along its rays), so
    a run's numbers are those it gives without this; a failure is recorded, never fatal."""
    import random

    import numpy as np

    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=devices):
            return describe(model, forward)
    except Exception as err:  # noqa: BLE001 - the run goes on; explain lists the cell as left out
        return {"error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)

