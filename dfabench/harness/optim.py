"""Optimisers and learning-rate schedules named by the shared hyper-parameters."""
from __future__ import annotations

import torch

from ..task import TrainHParams


def build_optimizer(params, hp: TrainHParams, capturable: bool = False) -> torch.optim.Optimizer:
    """``capturable``: an optimiser whose step can be recorded in a CUDA graph (harness/capture.py): its
    state and learning rate live on the device (lr a tensor, so schedules still change it between replays)."""
    params = [p for p in params if p.requires_grad]
    lr = torch.tensor(hp.lr, device=params[0].device) if capturable and params else hp.lr
    if hp.optimizer == "sgd":
        # SGD keeps no step count on the host; its momentum buffers exist after the warm-up steps
        return torch.optim.SGD(params, lr=lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
    cls = torch.optim.AdamW if hp.optimizer == "adamw" else torch.optim.Adam
    # A task may declare Adam's epsilon (the LM's 1e-9, as in the paper); torch's 1e-8 otherwise.
    extra = {"capturable": True} if capturable else {}
    return cls(params, lr=lr, betas=hp.betas, eps=getattr(hp, "adam_eps", 1e-8), weight_decay=hp.weight_decay, **extra)


class Schedule:
    """Wraps torch's schedulers so the runner calls one thing per step and per evaluation."""

    def __init__(self, optimizer: torch.optim.Optimizer, hp: TrainHParams, d_model: int | None = None):
        self.kind = hp.schedule
        self.scheduler = None
        if self.kind == "step":
            self.scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=hp.step_size, gamma=hp.gamma)
        elif self.kind == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=hp.epochs)
        elif self.kind == "exponential":
            # NeRF's rule (lr decays exponentially to lr * gamma over training), applied per epoch.
            self.scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=hp.gamma ** (1 / hp.epochs))
        elif self.kind == "warmup":
            # A linear ramp from lr / warmup_steps to lr over the first warmup_steps steps, then constant.
            warmup = hp.warmup_steps
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
        elif self.kind == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=hp.gamma, patience=hp.plateau_patience)
        elif self.kind == "noam":
            # Vaswani et al.: lr * min(step^-0.5, step * warmup^-1.5), normalised to peak at lr.
            warmup = hp.warmup_steps

            def noam(step: int) -> float:
                step = max(step, 1)
                return min(step ** -0.5, step * warmup ** -1.5) * warmup ** 0.5

            self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, noam)

    def after_step(self) -> None:
        if self.kind in ("noam", "warmup"):
            self.scheduler.step()

    def after_epoch(self) -> None:
        if self.kind in ("step", "cosine", "exponential"):
            self.scheduler.step()

    def after_eval(self, loss_like: float) -> None:
        """``loss_like``: a value that should go down (the primary metric, negated if higher is better)."""
        if self.kind == "plateau":
            self.scheduler.step(loss_like)
