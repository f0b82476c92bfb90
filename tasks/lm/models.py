"""The lm task's two models: the paper's post-LN Transformer and a pre-LN GPT-2.

``PaperTransformer`` (model ``transformer``) is the model of Launay et al.'s Table 5, written after
the authors' code (lightonai/dfa-scales-to-modern-deep-learning, ``transformer.py``): post-LN blocks
``norm1(x + drop(attn(x)))`` then ``norm2(x + drop(ff(x)))`` with ReLU and **no final LayerNorm**;
token embedding x sqrt(d_model) plus fixed sinusoidal positions; uniform +-0.1 init of the embedding
and of an untied decoder with a bias. Feedback points: the macro point (default tag) after ``norm2``;
micro points (tag ``micro``) after ``norm1`` and after ``dropout(relu(linear1))``. The error is taken
where the authors' code takes it by default (``dfa_after_vocab=False``): at the decoder's *input*, so
the feedback matrix is d_model x largest point and the decoder learns from its true gradient;
``error_at="logits"`` takes it after the decoder instead. ``layer_norm=False`` (model
``transformer-noln``) makes both norms identities: the same network with no normalisation at all.

``PreLNGPT2`` (model ``gpt2-preln``) is GPT-2 from ``transformers`` (pre-LN: every sub-layer normalises
its input, and ``ln_f`` normalises the stream once more), with forward hooks adding macro points at
block outputs and micro points after ``ln_2`` and the FFN activation; the error is taken at the
logits. DFA collapses it to the unigram distribution (see ``stream_statistics`` and the task README):
a finding about the architecture, kept as a second model.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dfabench.engine.points import FeedbackOutput, FeedbackPoint


class PostLNBlock(nn.Module):
    """One encoder layer of the paper's model with a causal mask, and its three feedback points.

    ``norm="post"`` (the paper's): ``norm1(x + attn(x))`` then ``norm2(x + ff(x))``. ``norm="pre"``
    (the normalisation probe's other placement): ``x + attn(norm1(x))`` then ``x + ff(norm2(x))``, the
    model adding one final LayerNorm before the decoder. ``norm="none"``: the norms are identities.
    ``residual_tap`` (an identity) sees the second residual sum before any normalisation in every
    placement: where ``stream_statistics(..., at="residual")`` reads the stream.
    """

    def __init__(self, d_model: int, heads: int, d_ff: int, dropout: float, norm: str = "post"):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.linear1, self.linear2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        # norm "none" (model transformer-noln) is the same block with the norms as identities:
        # the normalisation-placement probe's "no LN" arm, every point where it was
        make = (lambda: nn.LayerNorm(d_model)) if norm != "none" else nn.Identity
        self.pre = norm == "pre"
        self.norm1, self.norm2 = make(), make()
        self.drop_attn, self.drop_hidden, self.drop_ff = (nn.Dropout(dropout) for _ in range(3))
        self.after_norm1 = FeedbackPoint(tag="micro")
        self.after_hidden = FeedbackPoint(tag="micro")
        self.after_norm2 = FeedbackPoint()  # the macro point: one per block
        self.residual_tap = nn.Identity()

    def _attend(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x, attn_mask=mask, need_weights=False, is_causal=True)[0]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pre:  # the micro points sit where the post-LN block has them: after each sub-layer's sum
            x = self.after_norm1(x + self.drop_attn(self._attend(self.norm1(x), mask)))
            hidden = self.after_hidden(self.drop_hidden(F.relu(self.linear1(self.norm2(x)))))
            return self.after_norm2(self.residual_tap(x + self.drop_ff(self.linear2(hidden))))
        x = self.after_norm1(self.norm1(x + self.drop_attn(self._attend(x, mask))))
        hidden = self.after_hidden(self.drop_hidden(F.relu(self.linear1(x))))
        return self.after_norm2(self.norm2(self.residual_tap(x + self.drop_ff(self.linear2(hidden)))))


def sinusoidal_positions(context: int, d_model: int) -> torch.Tensor:
    position = torch.arange(context, dtype=torch.float32)[:, None]
    rate = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(context, d_model)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate)[:, : d_model // 2]
    return table


class PaperTransformer(nn.Module):
    def __init__(self, vocab_size: int, context: int, layers: int, d_model: int, heads: int, d_ff: int,
                 dropout: float, error_at: str = "decoder_input", layer_norm: bool = True, norm: str | None = None):
        super().__init__()
        if error_at not in ("decoder_input", "logits"):
            raise ValueError(f"error_at must be 'decoder_input' or 'logits', not {error_at!r}")
        norm = norm or ("post" if layer_norm else "none")
        if norm not in ("post", "pre", "none"):
            raise ValueError(f"norm must be 'post', 'pre' or 'none', not {norm!r}")
        self.error_at, self.norm = error_at, norm
        self.d_model = d_model
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.register_buffer("positions", sinusoidal_positions(context, d_model), persistent=False)
        self.register_buffer("causal_mask", torch.triu(torch.ones(context, context, dtype=torch.bool), 1),
                             persistent=False)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(PostLNBlock(d_model, heads, d_ff, dropout, norm) for _ in range(layers))
        # pre-LN normalises each sub-layer's input, so the stream reaches the decoder raw unless a final
        # norm takes it (as GPT-2's ln_f); post-LN's last norm2 already did
        self.final_norm = nn.LayerNorm(d_model) if norm == "pre" else nn.Identity()
        self.decoder = nn.Linear(d_model, vocab_size)
        self.output_marker = FeedbackOutput(batch_dims=2)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def stream_module(self) -> nn.Module:
        """The module whose input is the last block's output (what ``stream_statistics`` reads)."""
        return self.decoder

    def residual_module(self) -> nn.Module:
        """The identity whose input is the last block's residual sum before any normalisation."""
        return self.blocks[-1].residual_tap

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        length = input_ids.shape[1]
        x = self.drop(self.embedding(input_ids) * math.sqrt(self.d_model) + self.positions[:length])
        mask = self.causal_mask[:length, :length]
        for block in self.blocks:
            x = block(x, mask)
        x = self.final_norm(x)
        if self.error_at == "decoder_input":
            return self.decoder(self.output_marker(x))
        return self.output_marker(self.decoder(x))


def _route_output(marker):
    def hook(module, args, output):
        if isinstance(output, tuple):
            return (marker(output[0]),) + tuple(output[1:])
        return marker(output)
    return hook


class PreLNGPT2(nn.Module):
    def __init__(self, vocab_size: int, context: int, layers: int, d_model: int, heads: int, d_ff: int,
                 dropout: float):
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(vocab_size=vocab_size, n_positions=context, n_embd=d_model, n_layer=layers,
                            n_head=heads, n_inner=d_ff, resid_pdrop=dropout, embd_pdrop=dropout,
                            attn_pdrop=dropout, tie_word_embeddings=False, use_cache=False,
                            bos_token_id=None, eos_token_id=None)  # our BPE has no GPT-2 special ids
        self.lm = GPT2LMHeadModel(config)
        self.macro_points = nn.ModuleList(FeedbackPoint() for _ in range(layers))
        self.micro_points = nn.ModuleList(FeedbackPoint(tag="micro") for _ in range(2 * layers))
        self.output_marker = FeedbackOutput(batch_dims=2)
        for i, block in enumerate(self.lm.transformer.h):
            block.ln_2.register_forward_hook(_route_output(self.micro_points[2 * i]))
            block.mlp.act.register_forward_hook(_route_output(self.micro_points[2 * i + 1]))
            block.register_forward_hook(_route_output(self.macro_points[i]))
        self.lm.lm_head.register_forward_hook(_route_output(self.output_marker))

    def stream_module(self) -> nn.Module:
        """The final LayerNorm: its input is the raw residual stream after the last block."""
        return self.lm.transformer.ln_f

    residual_module = stream_module  # pre-LN: the block's output is already the raw residual sum

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=input_ids, use_cache=False).logits


@torch.no_grad()
def stream_statistics(model: nn.Module, input_ids: torch.Tensor, at: str = "output") -> dict[str, float]:
    """The collapse signature, read at the last block's output (the input of ``stream_module()``), or
    with ``at="residual"`` at its residual sum before any normalisation (``residual_module()``), the
    same place in every placement: post-LN's block output is normalised by construction.

    ``stream_norm``: the mean L2 norm of a token's vector. ``shared_to_spread``: the norm of the
    component every token shares (the mean vector over batch and time) over the spread around it
    (root-mean-square distance of the tokens to that mean). A stream whose shared part dwarfs the
    spread hands the head almost the same vector for every token: unigram predictions.
    """
    seen: list[torch.Tensor] = []
    module = model.residual_module() if at == "residual" else model.stream_module()
    handle = module.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    was_training = model.training
    model.eval()
    try:
        model(input_ids)
    finally:
        handle.remove()
        model.train(was_training)
    h = seen[0].reshape(-1, seen[0].shape[-1]).double()
    shared = h.mean(dim=0)
    spread = (h - shared).pow(2).sum(dim=1).mean().sqrt()
    return {"stream_norm": float(h.norm(dim=1).mean()),
            "shared_to_spread": float(shared.norm() / spread.clamp_min(1e-12))}
