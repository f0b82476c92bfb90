"""The `ctr` task: the paper's Table 2 (click-through-rate prediction on click logs).

Models ``lr`` (the floor) and ``fm`` train with BP only (no hidden layer), as in the paper; ``deepfm``,
``dcn``, ``autoint``, ``afn`` and ``dcnv2`` (beyond the paper) carry feedback points (models.py).
Binary cross-entropy on the click logit; test AUC (primary) and logloss at the best validation AUC;
``patience`` stops early on validation AUC. Data (data.py) is kept in memory as int tensors and
batched by indexing a random permutation: no per-sample loading, so training is never data-bound;
records report training samples per second and the share of time spent producing batches.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from dfabench.task import floor
from dfabench.harness.identity import settings_version
from dfabench.hparams import ConfigError
from dfabench.task import Task, TrainHParams, register_task, tensor_fingerprint

from . import data as logs
from .models import MODELS


class CTRHParams(TrainHParams):
    embedding_dim: int = Field(16, ge=1)
    hidden: list[int] = Field(default_factory=lambda: [400, 400, 400])
    dropout: float = Field(0.0, ge=0, lt=1)
    cross_layers: int = Field(3, ge=1)
    attention_layers: int = Field(3, ge=1)
    heads: int = Field(2, ge=1)
    log_neurons: int = Field(400, ge=1)
    rows: int = Field(200_000, ge=100, description="synthetic: rows generated")
    path: str | None = Field(None, description="criteo: path of Kaggle's train.txt")
    min_count: int = Field(10, ge=1, description="criteo: values seen fewer times share the OOV index")


@dataclass
class CTRData:
    x: torch.Tensor  # (rows, fields) int64 field indices
    y: torch.Tensor  # (rows,) float 0/1
    splits: dict[str, torch.Tensor]  # split -> row indices
    field_dims: list[int]
    source: str
    planted: dict[str, float] | None = None  # synthetic logs: see data.planted_summary
    train_s: float = 0.0  # batching bookkeeping (see train_batches); throughput is the runner's
    batching_s: float = 0.0


@functools.lru_cache(maxsize=4)
def _encoded(dataset: str, rows: int, path: str | None, min_count: int) -> logs.Encoded:
    if dataset in logs.SYNTHETIC_LOGS:
        return logs.synthetic(rows, **logs.synthetic_settings(dataset))
    if dataset == "movielens":
        return logs.movielens()
    return logs.criteo(path, min_count)


@register_task
class CTRTask(Task):
    domain = "ctr"
    HParams = CTRHParams  # datasets, models, metrics: tasks/ctr/spec.py

    def load_data(self, dataset, hp: CTRHParams, seed, scale, device) -> CTRData:
        try:
            encoded = _encoded(dataset, hp.rows, hp.path, hp.min_count)
        except logs.CTRDataError as err:
            raise ConfigError(str(err)) from None
        train, val, test = logs.split(len(encoded.y), seed=0)  # fixed split: every seed sees the same rows
        x = torch.from_numpy(np.asarray(encoded.x, dtype=np.int64)).to(device)
        y = torch.from_numpy(np.asarray(encoded.y, dtype=np.float32)).to(device)
        splits = {name: torch.from_numpy(idx).to(device) for name, idx in (("train", train), ("val", val), ("test", test))}
        return CTRData(x, y, splits, encoded.field_dims, dataset, encoded.planted)

    def generator_version(self, dataset):
        return settings_version(logs.synthetic_settings(dataset)) if dataset in logs.SYNTHETIC_LOGS else None

    def build_model(self, model, hp: CTRHParams, data: CTRData):
        return MODELS[model](data.field_dims, dim=hp.embedding_dim, hidden=hp.hidden, dropout=hp.dropout,
                             cross_layers=hp.cross_layers, attention_layers=hp.attention_layers, heads=hp.heads,
                             log_neurons=hp.log_neurons)

    def train_batches(self, data: CTRData, hp, generator):
        rows = data.splits["train"]
        order = rows[torch.randperm(len(rows), generator=generator).to(rows.device)]
        started = time.perf_counter()
        for start in range(0, len(order), hp.batch_size):
            t0 = time.perf_counter()
            index = order[start:start + hp.batch_size]
            batch = (data.x[index], data.y[index])
            data.batching_s += time.perf_counter() - t0
            yield batch
        data.train_s += time.perf_counter() - started

    def loss(self, output, batch, model, hp):
        return F.binary_cross_entropy_with_logits(output, batch[1])

    def evaluate(self, model, data: CTRData, split, hp):
        from sklearn.metrics import log_loss, roc_auc_score

        rows = data.splits[split]
        logits = torch.cat([model(data.x[rows[s:s + 65536]]) for s in range(0, len(rows), 65536)])
        p = torch.sigmoid(logits).double().cpu().numpy()
        y = data.y[rows].cpu().numpy()
        return {"auc": float(roc_auc_score(y, p)), "logloss": float(log_loss(y, p, labels=[0, 1]))}

    def fingerprint(self, data: CTRData) -> str:
        return f"{data.source}:" + tensor_fingerprint(data.x[:100_000], data.y)

    def extras(self, model, data: CTRData, hp, run_dir):
        return {"batching_share": data.batching_s / data.train_s if data.train_s else None,
                "base_rate": float(data.y[data.splits["train"]].mean()),
                "floors": {"auc": floor(0.5, "a random ranking")},
                **({"planted": data.planted} if data.planted else {}),
                **({"generator": {"version": self.generator_version(data.source),
                                  "settings": logs.synthetic_settings(data.source)}}
                   if data.source in logs.SYNTHETIC_LOGS else {})}
