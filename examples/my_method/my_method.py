"""A credit-assignment method that lives outside dfabench: DFA with a ternary output error.

Every hidden layer's feedback point receives ``B t`` instead of DFA's ``B e``, where ``t`` keeps two
bits per output unit: each entry of an example's error ``e`` becomes ``sign(e_j)`` when ``|e_j|`` is
at least ``threshold`` of the example's largest ``|e|``, else 0; that ternary vector is centred (it
sums to zero over the outputs, as a softmax cross-entropy error does; uncentred, the many small
positive entries add a constant direction ``B 1`` that stops learning) and scaled by the example's
largest ``|e|``, so well-classified examples still send little. A hardware implementation would send
a few bits per output instead of a float. The output layer keeps its true gradient. Everything
else (the fixed random matrix ``B``, where the points are, how the signal reaches the weights) is
DFA's, through the hook ``DFA._feedback_error`` that DRTP also overrides.

Run it beside the built-in methods, from any folder:

    dfabench run 'mlp/digits/*' --method bp,dfa,path/to/my_method.py:MyMethod --scale smoke
    dfabench run 'mlp/digits/*' --method path/to/my_method.py:MyMethod --set method_options.threshold=0.25
"""
from __future__ import annotations

import torch
from pydantic import Field

from dfabench.engine.feedback import FeedbackOptions
from dfabench.methods.dfa import DFA


class TernaryOptions(FeedbackOptions):
    # An entry of the error is sent (as +-1 times the example's largest) when at least this share of it.
    threshold: float = Field(0.5, gt=0, le=1)


class MyMethod(DFA):
    name = "ternary-dfa"  # records and tables call it ternary-dfa@<first 8 hex of this file's sha256>
    summary = "DFA with a ternary error: each example's error rounded to -1/0/+1 (centred) times its largest entry"
    requires_tags = frozenset()  # any model with feedback points; {"micro"} would need tagged points
    Options = TernaryOptions

    def _feedback_error(self, record, error: torch.Tensor) -> torch.Tensor:
        flat = error.flatten(start_dim=record.batch_dims)  # (batch..., features)
        peak = flat.abs().amax(dim=-1, keepdim=True)
        kept = flat.abs() >= self.options.threshold * peak
        ternary = torch.sign(flat) * kept
        ternary = ternary - ternary.mean(dim=-1, keepdim=True)  # sums to zero over the outputs, as e does
        return (ternary * peak).reshape(error.shape)
