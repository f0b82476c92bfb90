"""The `lm` task: Transformer language modelling (paper Table 5) with BP, macro and micro DFA.

Datasets: ``wiki-gensim`` (the 106 Wikipedia articles in gensim's wheel, split by article, offline);
``kjv`` (Debian bible-kjv, offline); ``wikitext-103`` / ``wikitext-2`` (official, named
explicitly: raw files from ``data_dir`` / $DFABENCH_WIKITEXT_DIR, or downloaded through `datasets`
when ``download: true`` or $DFABENCH_DOWNLOAD=1). Model: ``gpt`` (GPT-2 configuration from
`transformers`, trained from scratch; hooks add the feedback points). Metric: perplexity over a
full deterministic pass of non-overlapping windows (lower is better); tokens/second in extras.
Micro DFA is method option tags ['default', 'micro'].
"""
from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pydantic import Field

from dfabench.task import Metric, Task, TrainHParams, register_task, tensor_batches, tensor_fingerprint

from .data import (bpe_tokenizer, gensim_wiki_articles, kjv_lines, split_articles, split_blocks,
                   wikitext_hub_splits, wikitext_splits)
from .models import TransformerLM


class LMHParams(TrainHParams):
    vocab_size: int = Field(2048, ge=260)
    context: int = Field(64, ge=2)
    layers: int = Field(2, ge=1)
    d_model: int = Field(128, ge=8)
    heads: int = Field(4, ge=1)
    d_ff: int = Field(512, ge=8)
    dropout: float = Field(0.1, ge=0, lt=1)
    train_tokens: int | None = Field(None, ge=1, description="use only the first N training tokens")
    eval_tokens: int | None = Field(None, ge=1, description="use only the first N val/test tokens")
    data_dir: str | None = Field(None, description="folder holding wiki.{train,valid,test}.raw (WikiText)")
    download: bool = Field(False, description="allow downloading official WikiText through `datasets`")


@dataclass
class TokenData:
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    vocab_size: int
    source: str


@functools.lru_cache(maxsize=2)
def _splits(dataset: str, data_dir: str | None = None, download: bool = False):
    if dataset == "kjv":
        return split_blocks(kjv_lines())
    if dataset == "wiki-gensim":
        return split_articles(gensim_wiki_articles())
    data_dir = data_dir or os.environ.get("DFABENCH_WIKITEXT_DIR")
    if data_dir:
        return wikitext_splits(data_dir)
    if download or os.environ.get("DFABENCH_DOWNLOAD") == "1":
        return wikitext_hub_splits(f"{dataset}-raw-v1")
    raise FileNotFoundError(f"{dataset}: set data_dir / $DFABENCH_WIKITEXT_DIR to the raw files, "
                            "or allow the download with download: true / $DFABENCH_DOWNLOAD=1")


def _encode(tok, lines: list[str]) -> torch.Tensor:
    ids = [i for enc in tok.encode_batch(lines) for i in enc.ids]
    return torch.tensor(ids, dtype=torch.long)


def _windows(ids: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = (len(ids) - 1) // context
    x = ids[: n * context].view(n, context)
    y = ids[1: n * context + 1].view(n, context)
    return x, y


@register_task
class LMTask(Task):
    domain = "lm"
    HParams = LMHParams
    metrics = (Metric("perplexity", False), Metric("loss", False))
    primary_metric = "perplexity"
    point_tags = frozenset({"default", "micro"})
    datasets = {"wiki-gensim": "106 Wikipedia articles from gensim's test data, markup stripped, split by article",
                "kjv": "King James Bible (Debian bible-kjv), split by blocks of 100 verses",
                "wikitext-103": "official WikiText-103 raw (local files or `datasets` download)",
                "wikitext-2": "official WikiText-2 raw (local files or `datasets` download)"}
    explicit_datasets = frozenset({"wikitext-103", "wikitext-2"})
    models = {"gpt": "decoder-only Transformer (transformers GPT2Config), macro+micro feedback points"}

    def load_data(self, dataset, hp: LMHParams, seed, scale, device) -> TokenData:
        splits = _splits(dataset, hp.data_dir, hp.download)
        tok = bpe_tokenizer(splits["train"], hp.vocab_size)
        ids = {k: _encode(tok, v) for k, v in splits.items()}
        if hp.train_tokens:
            ids["train"] = ids["train"][: hp.train_tokens]
        if hp.eval_tokens:
            ids["val"], ids["test"] = ids["val"][: hp.eval_tokens], ids["test"][: hp.eval_tokens]
        return TokenData(ids["train"].to(device), ids["val"].to(device), ids["test"].to(device),
                         tok.get_vocab_size(), dataset)

    def build_model(self, model, hp: LMHParams, data: TokenData):
        return TransformerLM(data.vocab_size, hp.context, hp.layers, hp.d_model, hp.heads, hp.d_ff, hp.dropout)

    def train_batches(self, data: TokenData, hp: LMHParams, generator):
        return tensor_batches(_windows(data.train, hp.context), hp.batch_size, generator)

    throughput_unit = "tokens"

    def batch_items(self, batch):
        return int(batch[1].numel())

    def forward(self, model, batch):
        return model(batch[0])

    def loss(self, output, batch, model, hp):
        return F.cross_entropy(output.flatten(0, 1), batch[1].flatten())

    def evaluate(self, model, data: TokenData, split, hp: LMHParams):
        x, y = _windows(getattr(data, split), hp.context)
        total, count = 0.0, 0
        for start in range(0, len(x), hp.batch_size):
            logits = model(x[start:start + hp.batch_size])
            target = y[start:start + hp.batch_size]
            total += float(F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="sum"))
            count += target.numel()
        loss = total / count
        return {"perplexity": math.exp(min(loss, 50.0)), "loss": loss}

    def fingerprint(self, data: TokenData) -> str:
        return f"{data.source}:" + tensor_fingerprint(data.train, data.test)

    def extras(self, model, data: TokenData, hp: LMHParams, run_dir):
        x, _ = _windows(data.val, hp.context)
        x = x[: hp.batch_size]
        model.eval()
        start = time.perf_counter()
        with torch.no_grad():
            model(x)
        return {"eval_tokens_per_s": x.numel() / max(time.perf_counter() - start, 1e-9)}
