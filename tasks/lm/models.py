"""A decoder-only Transformer from `transformers` (GPT-2 configuration), trained from scratch.

Feedback points are added with forward hooks, without forking the library's code:
macro points (tag "default") at every block output; micro points (tag "micro") after the
attention sub-layer's norm (ln_2 output) and after the FFN hidden activation. The logits go
through FeedbackOutput(batch_dims=2) so each token's error is projected.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

from dfabench.engine.points import FeedbackOutput, FeedbackPoint


def _route_output(marker):
    def hook(module, args, output):
        if isinstance(output, tuple):
            return (marker(output[0]),) + tuple(output[1:])
        return marker(output)
    return hook


class TransformerLM(nn.Module):
    def __init__(self, vocab_size: int, context: int, layers: int, d_model: int, heads: int, d_ff: int,
                 dropout: float):
        super().__init__()
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

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=input_ids, use_cache=False).logits
