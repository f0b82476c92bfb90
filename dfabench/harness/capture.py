"""One training step (zero grads, forward, the method's backward, clip, optimiser step), eager or captured.

``capture: true`` (``dfabench run --compile``) captures the step so the host stops paying for it
each time:

* on CUDA, the whole step is recorded once as a CUDA graph (``torch.cuda.graphs``) and replayed:
  the batch is copied into static input buffers, the gradients are the graph's own persistent
  tensors, and the optimiser is built ``capturable`` with its learning rate a device tensor (so
  schedules still act). The router's and the method's Python work (plans, checks) runs once, at
  capture. A batch of another shape (an epoch's short last batch) runs eagerly. Methods whose step
  changes from one step to the next (``hybrid``'s coin) cannot be one graph and are refused.
* on a CPU, the model's forward is compiled with ``torch.compile`` (inductor, which needs a C++
  compiler); autograd then runs the compiled backward, for BP and for DFA's cut blocks alike.

Captured and eager steps compute the same update (tests/test_capture.py: same parameters after a
few steps on CPU, to float rounding: inductor fuses and reorders arithmetic). If the compiler is
missing or compiling fails, the run stops with one line that says so.
"""
from __future__ import annotations

import shutil
from typing import Any, Callable

import torch

from ..errors import ConfigError


class CaptureError(ConfigError):
    """capture was asked for and cannot be had here."""


def _step_fn(model, method, optimizer, forward: Callable[[Any, Any], Any], loss: Callable[[Any, Any], torch.Tensor],
             grad_clip: float | None) -> Callable[[Any], torch.Tensor]:
    def step(batch):
        optimizer.zero_grad(set_to_none=True)
        output = forward(model, batch)
        value = method.backward(output, lambda out: loss(out, batch))
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        return value
    return step


def eager_step(model, method, optimizer, forward, loss, grad_clip):
    """The step as the runner always took it: returns the detached loss (no host sync)."""
    return _step_fn(model, method, optimizer, forward, loss, grad_clip)


def compiled_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``torch.compile(model)`` on a CPU, checked up front: a missing compiler is one clear line, not a
    traceback from deep inside inductor at the first step."""
    if device.type == "cpu" and not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")):
        raise CaptureError("capture on a CPU compiles the model with torch.compile, which needs a C++ compiler "
                           "(g++ or clang++) on PATH; none was found (drop --compile / capture)")
    return torch.compile(model)


def preflight(device: str) -> None:
    """Before anything runs: on a CPU, compile one tiny function, so a machine where torch.compile cannot
    work refuses ``--compile`` with one line (exit 2) instead of recording a failed run per cell."""
    if torch.device(device).type != "cpu":
        return
    compiled_model(torch.nn.Identity(), torch.device("cpu"))  # the compiler check
    first_call(torch.compile(lambda x: x * 2 + 1), torch.ones(3))


def first_call(step: Callable[[Any], torch.Tensor], batch) -> torch.Tensor:
    """Run the first captured step, turning a compiler failure into one line."""
    try:
        return step(batch)
    except Exception as err:  # inductor raises many kinds (BackendCompilerFailed, CalledProcessError, ...)
        if type(err).__module__.startswith(("torch._dynamo", "torch._inductor", "subprocess")):
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise CaptureError(f"capture: torch.compile failed on this machine ({type(err).__name__}: {first})"
                               ) from None
        raise


class CompiledStep:
    """CPU: the step with the model's forward compiled; the first call compiles (and is checked)."""

    def __init__(self, model, method, optimizer, forward, loss, grad_clip, device):
        self.step = _step_fn(compiled_model(model, device), method, optimizer, forward, loss, grad_clip)
        self.compiled = False

    def __call__(self, batch) -> torch.Tensor:
        if not self.compiled:
            self.compiled = True
            return first_call(self.step, batch)
        return self.step(batch)


class CudaGraphStep:
    """CUDA: the whole step as one CUDA graph per batch shape seen first; other shapes run eagerly.

    Written to torch.cuda.graphs' whole-network recipe (warm-up on a side stream, capture with the
    gradients allocated inside the graph's pool so they persist across replays)."""

    WARMUP = 3

    def __init__(self, model, method, optimizer, forward, loss, grad_clip, device):
        if type(method).backward is not _base_backward():
            raise CaptureError(f"capture: method {method.name!r} changes its step from one step to the next "
                               "(its own backward), so it cannot be replayed as one CUDA graph")
        self.eager = _step_fn(model, method, optimizer, forward, loss, grad_clip)
        self.model, self.optimizer, self.device = model, optimizer, device
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_batch = None
        self.static_loss: torch.Tensor | None = None
        self.signature = None

    def __call__(self, batch) -> torch.Tensor:
        signature = _signature(batch)
        if self.graph is None:
            self._capture(batch, signature)
        elif signature != self.signature:
            return self.eager(batch)  # e.g. the short last batch of an epoch
        _copy_into(self.static_batch, batch)
        self.graph.replay()
        return self.static_loss.clone()  # the static loss is overwritten by the next replay

    def _capture(self, batch, signature) -> None:
        self.static_batch, self.signature = _static_copy(batch), signature
        # the warm-up steps train; undo them after capture so the run follows the eager trajectory
        saved = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):  # warm-up: optimiser state and autograd's caches exist before capture
            for _ in range(self.WARMUP):
                self.eager(self.static_batch)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_loss = self.eager(self.static_batch)
        with torch.no_grad():  # in place: the graph keeps these addresses
            for k, v in self.model.state_dict().items():
                v.copy_(saved[k])
            for state in self.optimizer.state.values():  # zeroed moments and steps act as fresh state
                for v in state.values():
                    if isinstance(v, torch.Tensor):
                        v.zero_()


def _base_backward():
    from ..methods.base import Method
    return Method.backward


def _signature(batch):
    if isinstance(batch, torch.Tensor):
        return ("t", tuple(batch.shape), batch.dtype, batch.device)
    if isinstance(batch, (tuple, list)):
        return (type(batch).__name__, tuple(_signature(b) for b in batch))
    if isinstance(batch, dict):
        return ("d", tuple((k, _signature(v)) for k, v in sorted(batch.items())))
    raise CaptureError(f"capture on CUDA needs batches of tensors (tuples, lists, dicts of them), "
                       f"got a {type(batch).__name__}")


def _static_copy(batch):
    if isinstance(batch, torch.Tensor):
        return batch.clone()
    if isinstance(batch, (tuple, list)):
        return type(batch)(_static_copy(b) for b in batch)
    return {k: _static_copy(v) for k, v in batch.items()}


def _copy_into(static, batch) -> None:
    if isinstance(static, torch.Tensor):
        static.copy_(batch, non_blocking=True)
    elif isinstance(static, dict):
        for k in static:
            _copy_into(static[k], batch[k])
    else:
        for s, b in zip(static, batch):
            _copy_into(s, b)


def training_step(model, method, optimizer, forward, loss, grad_clip, device: torch.device, capture: bool):
    """The step the runner calls once per batch: eager, or captured as this device allows."""
    if not capture:
        return eager_step(model, method, optimizer, forward, loss, grad_clip)
    if device.type == "cuda":
        return CudaGraphStep(model, method, optimizer, forward, loss, grad_clip, device)
    return CompiledStep(model, method, optimizer, forward, loss, grad_clip, device)
