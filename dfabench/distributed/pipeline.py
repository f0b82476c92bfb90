"""One rank's stage of a pipelined training step, for BP and for DFA, on one GPipe schedule.

Every rank builds the whole model from the same seed and prepares the method on it, so every rank has
the same feedback matrices ``B`` and the same markers; it then runs only its own stage's blocks and
its optimiser holds only their parameters. A step with ``m`` micro-batches:

1. forward, micro-batch by micro-batch: receive the activation from the stage below (the input on the
   first stage), run the stage, send the result up (``isend``, so the next micro-batch's forward
   overlaps the transfer). The last stage computes each micro-batch's loss (mean over the micro-batch,
   divided by m, so the micro-batches' gradients add up to the full batch's);
2. backward:

   * BP: the last stage runs autograd from each loss and sends the gradient of its input down; every
     other stage waits for that gradient, runs autograd from its output and sends its own input's down.
   * DFA: the last stage has each micro-batch's output error e (``loss.backward()`` stops at the output
     leaf, as in the engine). It broadcasts all of them at once; every stage then projects ``B e`` for
     its own points and injects the signals with the engine's own code (``DFA._deliveries`` and
     ``inject``): no stage waits for another.

``schedule="eager"`` (DFA only) is the schedule only DFA allows: each micro-batch's errors are
broadcast as soon as the last stage has them, and a stage runs that micro-batch's backward before it
waits for its next activation (or after its last forward), so the backward fills the forward's bubble
instead of following it.

Same code on CPU (gloo) and GPU (NCCL): only the device of the tensors differs. Methods other than
``bp`` and the DFA family (dfa, dfa-sparse, dfa-sign, per_point, tags) are refused, DRTP among them
(it projects the target, which only the last stage has).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..engine.projection import inject
from ..engine.router import Discovery, OutputRecord
from ..methods.base import Method
from ..methods.bp import BP
from ..methods.dfa import DFA
from .placement import split_points, stage_slices

LossFn = Callable[[Any, torch.Tensor], torch.Tensor]


class Pipeline:
    """Rank ``rank``'s stage of ``model`` (an ``nn.Sequential`` of blocks) trained by ``method``.

    ``method`` must already be prepared on ``model`` (``method.prepare(model, probe, seed)``, the same
    on every rank). ``example`` is one full batch of inputs (its shape fixes the transfers' shapes).
    """

    def __init__(self, model: nn.Sequential, method, example: torch.Tensor, loss_fn: LossFn,
                 micro_batches: int = 1, cuts: list[int] | None = None, rank: int | None = None,
                 world: int | None = None, schedule: str = "gpipe"):
        self.rank = dist.get_rank() if rank is None else rank
        self.world = dist.get_world_size() if world is None else world
        self.dfa = pipelined_kind(method) == "dfa"
        if schedule not in ("gpipe", "eager") or (schedule == "eager" and not self.dfa):
            raise ValueError(f"schedule {schedule!r}: gpipe for both methods, or eager for the dfa family")
        self.schedule = schedule
        # the eager schedule's error broadcasts run on a group of their own, beside the activations'
        # transfers (every rank makes its pipelines in the same order, so the groups match)
        self.errors_group = dist.new_group() if schedule == "eager" else None
        if example.shape[0] % micro_batches:
            raise ValueError(f"a batch of {example.shape[0]} does not split into {micro_batches} equal micro-batches")
        self.model, self.method, self.loss_fn, self.m = model, method, loss_fn, micro_batches
        self.cuts = split_points(model, self.world) if cuts is None else list(cuts)
        slices = stage_slices(len(model), self.cuts)
        self.stage = model[slices[self.rank]]
        self.first, self.last = self.rank == 0, self.rank == self.world - 1
        self.device = example.device
        self._shapes(example[: example.shape[0] // micro_batches], slices)

    def parameters(self):
        """This stage's parameters (what its optimiser updates)."""
        return self.stage.parameters()

    def _shapes(self, micro: torch.Tensor, slices: list[slice]) -> None:
        """The shapes every rank must know before any transfer: each stage's input and output, and
        (DFA) every output group's error. Found by one forward without grad through every stage."""
        router = self.method.router
        saved, router.discovery = router.discovery, Discovery()
        mode = router.mode
        router.mode = "discover"
        try:
            with torch.no_grad():
                h = micro
                self.inputs: list[tuple[torch.Size, torch.dtype]] = []
                for part in slices:
                    self.inputs.append((h.shape, h.dtype))
                    h = self.model[part](h)
            found = router.discovery
        finally:
            router.mode, router.discovery = mode, saved
        self.out_dtype = h.dtype if isinstance(h, torch.Tensor) else micro.dtype
        groups = dict(found.output_shapes)
        if not groups and isinstance(h, torch.Tensor):  # no FeedbackOutput: what the model returns
            groups["default"] = (tuple(h.shape), getattr(self.method.options, "batch_dims", 1))
        self.groups = sorted(groups)  # the broadcast's order, the same on every rank
        self.error_shapes = {g: groups[g] for g in self.groups}
        markers = {m.group: m for m in router.outputs}
        self.markers = {g: markers.get(g) for g in self.groups}

    # -- transfers ------------------------------------------------------------------------------
    def _recv(self, shape, dtype, src: int) -> torch.Tensor:
        buffer = torch.empty(shape, dtype=dtype, device=self.device)
        dist.recv(buffer, src)
        return buffer

    # -- the step -------------------------------------------------------------------------------
    def step(self, x: torch.Tensor | None, target: torch.Tensor | None) -> torch.Tensor | None:
        """One training step's gradients into this stage's ``.grad`` (the caller zeroes and steps the
        optimiser). ``x`` is used on the first stage, ``target`` on the last; returns the loss there."""
        xs = x.chunk(self.m) if self.first else [None] * self.m
        ts = target.chunk(self.m) if self.last else [None] * self.m
        if self.schedule == "eager":
            return self._eager_step(xs, ts)
        pending: list = []
        saved, losses = [], []
        for j in range(self.m):
            h = xs[j] if self.first else self._recv(*self.inputs[self.rank], self.rank - 1)
            if not self.dfa and not self.first:
                h.requires_grad_(True)
            out = self.stage(h)
            if not self.last:
                pending.append(dist.isend(out.detach(), self.rank + 1))
            saved.append(self._after_forward(h, out, ts[j], losses))
        if self.dfa:
            self._dfa_backward(saved, losses)
        else:
            self._bp_backward(saved, pending)
        for work in pending:
            work.wait()
        return torch.stack(losses).sum() if self.last else None

    def _after_forward(self, h, out, target, losses):
        if not self.dfa:
            if self.last:
                loss = self.loss_fn(out, target) / self.m
                losses.append(loss.detach())
                return h, loss
            return h, out
        outputs, points = self.method.router.take()
        if not self.last:
            return None, points
        if outputs:
            loss = self.loss_fn(out, target) / self.m
        else:  # no FeedbackOutput: what the model returned is the output (as DFA._backward does)
            leaf = out.detach().requires_grad_(True)
            outputs = [OutputRecord(None, out, leaf, self.error_shapes["default"][1])]
            loss = self.loss_fn(leaf, target) / self.m
        loss.backward()  # stops at the output leaves: e = dL/d(output)
        losses.append(loss.detach())
        return outputs, points

    def _bp_backward(self, saved, pending) -> None:
        for h, top in saved:
            if self.last:
                top.backward()
            else:
                grad = self._recv(top.shape, top.dtype, self.rank + 1)
                torch.autograd.backward(top, grad)
            if not self.first:
                pending.append(dist.isend(h.grad, self.rank - 1))

    # -- DFA: the errors, then every stage's own injection --------------------------------------
    def _error_buffer(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One buffer for every micro-batch's errors (group by group in the agreed order), and its
        per-micro-batch views."""
        per_micro = sum(_numel(self.error_shapes[g][0]) for g in self.groups)
        buffer = torch.empty(self.m * per_micro, dtype=self.out_dtype, device=self.device)
        return buffer, list(buffer.split(per_micro))

    def _fill(self, view: torch.Tensor, outputs) -> None:
        """The last stage writes one micro-batch's errors into its view."""
        by_group = {(o.marker.group if o.marker is not None else "default"): o for o in outputs}
        torch.cat([_error(by_group[g]).reshape(-1) for g in self.groups], out=view)

    def _inject(self, records, points, view: torch.Tensor) -> None:
        """One micro-batch's DFA backward on this stage: B e for its own points, injected at once."""
        sizes = [_numel(self.error_shapes[g][0]) for g in self.groups]
        errors = [e.view(self.error_shapes[g][0]) for g, e in zip(self.groups, view.split(sizes))]
        if self.last:
            by_group = {(o.marker.group if o.marker is not None else "default"): o for o in records}
            outputs = [by_group[g] for g in self.groups]
        else:  # stand-ins carrying only what the plan needs: the marker, e's shape, the batch dims
            outputs = [OutputRecord(self.markers[g], e, e, self.error_shapes[g][1])
                       for g, e in zip(self.groups, errors)]
        plans = self.method.plans.lookup(outputs, points)
        roots, signals, _ = self.method._deliveries(outputs, errors, plans, points, False, edges=True)
        del points
        if roots:
            inject(roots, signals)

    def _dfa_backward(self, saved, losses) -> None:
        """GPipe: one broadcast of every micro-batch's errors once all forwards are done."""
        buffer, views = self._error_buffer()
        if self.last:
            for (outputs, _), view in zip(saved, views):
                self._fill(view, outputs)
        dist.broadcast(buffer, self.world - 1)
        for (records, points), view in zip(saved, views):
            self._inject(records, points, view)

    def _eager_step(self, xs, ts) -> torch.Tensor | None:
        """DFA's own schedule: each micro-batch's errors go out as soon as the last stage has them (on a
        group of their own, the receives posted ahead, so they arrive while the stage computes), and a
        stage runs every backward whose errors have arrived before it waits for its next activation,
        and the rest after its last forward. (A gloo receive cannot be polled, so a backward is not
        started while a receive is pending.)"""
        _, views = self._error_buffer()
        works = [] if self.last else [dist.broadcast(v, self.world - 1, group=self.errors_group, async_op=True)
                                      for v in views]
        pending, saved, losses, done = [], [], [], 0

        def backward_ready() -> bool:
            nonlocal done
            if done < len(saved) and (self.last or works[done].is_completed()):
                if not self.last:
                    works[done].wait()
                self._inject(*saved[done], views[done])
                saved[done] = None
                done += 1
                return True
            return False

        for j in range(self.m):
            if not self.first:  # before waiting for the next activation, every backward that can run
                while backward_ready():
                    pass
            h = xs[j] if self.first else self._recv(*self.inputs[self.rank], self.rank - 1)
            out = self.stage(h)
            if not self.last:
                pending.append(dist.isend(out.detach(), self.rank + 1))
            saved.append(self._after_forward(h, out, ts[j], losses))
            if self.last:
                self._fill(views[j], saved[j][0])
                works.append(dist.broadcast(views[j], self.world - 1, group=self.errors_group, async_op=True))
                backward_ready()
        while done < self.m:
            if not backward_ready() and not self.last:
                works[done].wait()
        for work in [*pending, *works]:
            work.wait()
        return torch.stack(losses).sum() if self.last else None


def pipelined_kind(method) -> str:
    """'bp' or 'dfa': which step the pipeline runs for ``method``; a ValueError for any other method."""
    kind = type(method)
    if kind.backward is Method.backward:  # no step of its own (hybrid draws BP or DFA per step)
        if isinstance(method, DFA) and kind._backward is DFA._backward \
                and kind._feedback_error is DFA._feedback_error:  # DRTP projects the target instead
            return "dfa"
        if kind._backward is BP._backward:
            return "bp"
    raise ValueError(f"method {method.name!r}: the pipeline runs bp and the dfa family only")


def _error(record: OutputRecord) -> torch.Tensor:
    return record.leaf.grad if record.leaf.grad is not None else torch.zeros_like(record.leaf)


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
