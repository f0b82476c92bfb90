"""The `lm` task: Transformer language modelling (paper Table 5) with BP, macro and micro DFA.

Datasets: ``wiki-gensim`` (the 106 Wikipedia articles in gensim's wheel, split by article, offline);
``kjv`` (Debian bible-kjv, offline); ``wikitext-103`` / ``wikitext-2`` (official, named
explicitly: raw files from ``data_dir`` / $DFABENCH_WIKITEXT_DIR, or downloaded through `datasets`
when ``download: true`` or $DFABENCH_DOWNLOAD=1). Models (``models.py``): ``transformer``, the
paper's post-LN model, and ``gpt2-preln``, GPT-2 from `transformers`, on which DFA collapses.
Metric: perplexity over a full deterministic pass of non-overlapping windows (lower is better).
Every record's extras carry the unigram floor (``floors.perplexity``, add-one smoothing) and the
collapse signature at the last block's output at the start and end of training
(``stream_norm_*``, ``shared_to_spread_*``) and at its residual sum before any normalisation
(``residual_norm_*``, ``residual_shared_to_spread_*``). Micro DFA is method option tags ['default', 'micro'].
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
import time
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from dfabench.task import floor
from dfabench.task import Task, TrainHParams, register_task, tensor_batches, tensor_fingerprint

from .data import (LMDataError, TextSource, bpe_tokenizer, check_raw_file, encode_cached, find_wikitext,
                   gensim_wiki_articles, kjv_lines, split_articles, split_blocks, tokenizer_key,
                   wikitext_hub_splits)
from .models import PaperTransformer, PreLNGPT2, stream_statistics


class LMHParams(TrainHParams):
    vocab_size: int = Field(2048, ge=260)
    context: int = Field(64, ge=2)
    layers: int = Field(2, ge=1)
    d_model: int = Field(128, ge=8)
    heads: int = Field(4, ge=1)
    d_ff: int = Field(512, ge=8)
    dropout: float = Field(0.1, ge=0, lt=1)
    # Adam's epsilon: the paper's code uses 1e-9. A task-level key (not TrainHParams) so that the run
    # ids of every other domain's committed records stay what they are.
    adam_eps: float = Field(1e-8, gt=0)
    error_at: Literal["decoder_input", "logits"] = Field(
        "decoder_input", description="transformer only: where DFA's error is taken (the paper's default: the "
        "decoder input, d_model wide; 'logits': after the decoder, vocabulary wide)")
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
    key: str = ""  # content key of the corpus and the tokenizer (the run's data fingerprint)


@functools.lru_cache(maxsize=4)
def _source(dataset: str, data_dir: str | None = None, download: bool = False) -> TextSource:
    if dataset == "kjv":
        return TextSource.from_lists(dataset, split_blocks(kjv_lines()))
    if dataset == "wiki-gensim":
        return TextSource.from_lists(dataset, split_articles(gensim_wiki_articles()))
    data_dir = data_dir or os.environ.get("DFABENCH_WIKITEXT_DIR")
    if data_dir:
        files = find_wikitext(data_dir, dataset)
        for path in files.values():
            check_raw_file(path)
        return TextSource.from_files(dataset, files)
    if download or os.environ.get("DFABENCH_DOWNLOAD") == "1":
        return TextSource.from_lists(dataset, wikitext_hub_splits(f"{dataset}-raw-v1"))
    raise LMDataError(f"{dataset}: set data_dir / $DFABENCH_WIKITEXT_DIR to the raw files, "
                      "or allow the download with download: true / $DFABENCH_DOWNLOAD=1")


def _windows(ids: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = (len(ids) - 1) // context
    x = ids[: n * context].view(n, context)
    y = ids[1: n * context + 1].view(n, context)
    return x, y


def unigram_perplexity(train: torch.Tensor, split: torch.Tensor, vocab_size: int, context: int,
                       alpha: float = 1.0) -> float:
    """The floor a language model must beat: the perplexity of the training split's token frequencies
    (add-``alpha`` smoothing over the vocabulary) on the tokens ``evaluate`` scores in ``split``."""
    counts = torch.bincount(train.long(), minlength=vocab_size).double() + alpha
    logp = (counts / counts.sum()).log()
    _, targets = _windows(split, context)
    return math.exp(-float(logp[targets.long().flatten()].mean()))


MODELS = {"transformer": PaperTransformer, "gpt2-preln": PreLNGPT2}
# the paper's Transformer and its normalisation-probe variants: model name -> LayerNorm placement (the
# error site is the hyper-parameter error_at, set per model in hparams.yaml)
PAPER_NORMS = {"transformer": "post", "transformer-logits": "post", "transformer-noln": "none",
               "transformer-preln": "pre", "transformer-preln-logits": "pre"}


@register_task
class LMTask(Task):
    domain = "lm"
    HParams = LMHParams  # datasets, models, metrics: tasks/lm/spec.py
    # The pre-flight check loads the data as a run would (the tokenizer and ids are cached, so the runs
    # do not pay twice): a missing package, a missing, ambiguous, empty or non-UTF-8 WikiText file or
    # a split shorter than one window is refused before anything trains.
    data_errors = (LMDataError,)
    data_options = frozenset({"vocab_size", "context", "train_tokens", "eval_tokens", "data_dir", "download"})

    def load_data(self, dataset, hp: LMHParams, seed, scale, device) -> TokenData:
        source = _source(dataset, hp.data_dir, hp.download)
        tok = bpe_tokenizer(source.lines["train"](), hp.vocab_size, source.keys["train"])
        tok_key = tokenizer_key(source.keys["train"], hp.vocab_size)
        ids = {k: torch.from_numpy(encode_cached(tok, tok_key, source.keys[k], source.lines[k]()))
               for k in ("train", "val", "test")}
        if hp.train_tokens:
            ids["train"] = ids["train"][: hp.train_tokens]
        if hp.eval_tokens:
            ids["val"], ids["test"] = ids["val"][: hp.eval_tokens], ids["test"][: hp.eval_tokens]
        for split, tensor in ids.items():
            if len(tensor) <= hp.context:  # not one window to train on or to score
                raise LMDataError(f"{dataset}: the {split} split has {len(tensor)} tokens, fewer than one "
                                  f"window of context {hp.context} + 1")
        key = hashlib.sha256("|".join([tok_key, *(source.keys[k] for k in ("train", "val", "test")),
                                       *(str(len(ids[k])) for k in ("train", "val", "test"))]).encode())
        return TokenData(ids["train"].to(device), ids["val"].to(device), ids["test"].to(device),
                         tok.get_vocab_size(), dataset, key.hexdigest()[:16])

    def build_model(self, model, hp: LMHParams, data: TokenData):
        args = (data.vocab_size, hp.context, hp.layers, hp.d_model, hp.heads, hp.d_ff, hp.dropout)
        if model in PAPER_NORMS:
            return PaperTransformer(*args, error_at=hp.error_at, norm=PAPER_NORMS[model])
        return PreLNGPT2(*args)

    def train_batches(self, data: TokenData, hp: LMHParams, generator):
        return tensor_batches(_windows(data.train, hp.context), hp.batch_size, generator)

    throughput_unit = "tokens"

    def batch_items(self, batch):
        return int(batch[1].numel())

    def forward(self, model, batch):
        return model(batch[0])

    def loss(self, output, batch, model, hp):
        return F.cross_entropy(output.flatten(0, 1), batch[1].flatten().long())

    def evaluate(self, model, data: TokenData, split, hp: LMHParams):
        x, y = _windows(getattr(data, split), hp.context)
        total, count = 0.0, 0
        for start in range(0, len(x), hp.batch_size):
            logits = model(x[start:start + hp.batch_size])
            target = y[start:start + hp.batch_size].long()
            total += float(F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="sum"))
            count += target.numel()
        loss = total / count
        return {"perplexity": math.exp(min(loss, 50.0)), "loss": loss}

    def fingerprint(self, data: TokenData) -> str:
        return f"{data.source}:{data.key}" if data.key else f"{data.source}:" + tensor_fingerprint(data.train, data.test)

    def _probe_windows(self, data: TokenData, hp: LMHParams) -> torch.Tensor:
        x, _ = _windows(data.val, hp.context)
        return x[: hp.batch_size]

    def _stream(self, model, x: torch.Tensor, when: str) -> dict[str, float]:
        """The collapse signature at the last block's output (``stream_*``, where the committed records
        read it) and at its residual sum before any normalisation (``residual_*``: the same place in
        every LayerNorm placement, which the normalisation probe compares)."""
        out = {f"{name}_{when}": value for name, value in stream_statistics(model, x).items()}
        residual = stream_statistics(model, x, at="residual")
        return out | {f"residual_{name.removeprefix('stream_')}_{when}": value for name, value in residual.items()}

    def extras_at_start(self, model, data: TokenData, hp: LMHParams):
        return self._stream(model, self._probe_windows(data, hp), "start")

    def extras(self, model, data: TokenData, hp: LMHParams, run_dir):
        x = self._probe_windows(data, hp)
        model.eval()
        start = time.perf_counter()
        with torch.no_grad():
            model(x)
        elapsed = time.perf_counter() - start
        unigram = {split: unigram_perplexity(data.train, getattr(data, split), data.vocab_size, hp.context)
                   for split in ("val", "test")}
        return {"eval_tokens_per_s": x.numel() / max(elapsed, 1e-9),
                "unigram_perplexity": unigram,
                "floors": {"perplexity": floor(unigram["test"], "the unigram distribution (add-one)",
                                               higher_is_better=False)},
                "val_floors": {"perplexity": floor(unigram["val"], "the unigram distribution (add-one)",
                                                   higher_is_better=False)},
                **self._stream(model, x, "end")}
