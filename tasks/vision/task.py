"""The `vision` task: CNNs where DFA is known to fall behind BP, and the remedies.

Datasets: fashion-mnist (default), mnist, digits (always present), cifar10 (official python batches
from ``data_dir``). Models: ``lenet`` and ``resnet`` (ResNet-20 at paper scale, narrower below).
Feedback points after every conv block carry tag 'conv', head points the default tag: full DFA uses
tags [default, conv]; DFA on the head only (BP through the convolutions) uses tags [default].
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from dfabench.task import Task, TrainHParams, register_task, tensor_batches, tensor_fingerprint

from .data import load_vision
from .models import LeNet, ResNet


class VisionHParams(TrainHParams):
    resnet_blocks: int = Field(3, ge=1, description="blocks per stage (3 = ResNet-20)")
    resnet_width: int = Field(16, ge=1)
    train_limit: int | None = Field(None, ge=1, description="use only the first N training images")
    test_limit: int | None = Field(None, ge=1)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    data_dir: str | None = None


@dataclass
class VisionData:
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    channels: int
    size: int
    classes: int
    source: str


@functools.lru_cache(maxsize=4)
def _images(name, data_dir):
    return load_vision(name, data_dir)


def _as_nchw(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.array(x, copy=True)).float() / 255.0  # a copy: the cached arrays are read-only
    return t.unsqueeze(1) if t.dim() == 3 else t


@register_task
class VisionTask(Task):
    domain = "vision"
    HParams = VisionHParams  # datasets, models, metrics: tasks/vision/spec.py

    def load_data(self, dataset, hp: VisionHParams, seed, scale, device) -> VisionData:
        images = _images(dataset, hp.data_dir)
        x, y = _as_nchw(images.train_x), torch.from_numpy(np.asarray(images.train_y, dtype=np.int64))
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))  # fixed split across seeds
        n_val = int(round(hp.val_fraction * len(x)))
        val_idx, train_idx = order[:n_val], order[n_val:]
        if hp.train_limit is not None:
            train_idx, val_idx = train_idx[:hp.train_limit], val_idx[:max(1, hp.train_limit // 5)]
        tx, ty = _as_nchw(images.test_x), torch.from_numpy(np.asarray(images.test_y, dtype=np.int64))
        if hp.test_limit is not None:
            tx, ty = tx[:hp.test_limit], ty[:hp.test_limit]
        mean = x[train_idx].mean(dim=(0, 2, 3), keepdim=True)
        std = x[train_idx].std(dim=(0, 2, 3), keepdim=True)

        def prep(a, b):
            return ((a - mean) / std).to(device), b.to(device)

        classes = int(max(y.max(), ty.max())) + 1
        return VisionData(prep(x[train_idx], y[train_idx]), prep(x[val_idx], y[val_idx]), prep(tx, ty),
                          x.shape[1], x.shape[2], classes, images.source)

    def build_model(self, model, hp: VisionHParams, data: VisionData):
        if model == "lenet":
            return LeNet(data.channels, data.size, data.classes)
        return ResNet(data.channels, data.classes, hp.resnet_blocks, hp.resnet_width)

    def train_batches(self, data, hp, generator):
        return tensor_batches(data.train, hp.batch_size, generator)

    def loss(self, output, batch, model, hp):
        return F.cross_entropy(output, batch[1])

    def evaluate(self, model, data, split, hp):
        x, y = getattr(data, split)
        correct = 0
        for start in range(0, len(x), 1024):
            correct += int((model(x[start:start + 1024]).argmax(1) == y[start:start + 1024]).sum())
        acc = correct / len(x)
        return {"accuracy": acc, "top1_error": 100.0 * (1 - acc)}

    def fingerprint(self, data):
        return f"{data.source}:" + tensor_fingerprint(data.train[0], data.train[1], data.test[1])
