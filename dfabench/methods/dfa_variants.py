"""DFA with other feedback matrices (survey 001, DFA variants): each its own rows in the tables.

Options of ``FeedbackOptions`` (engine/feedback.py), so any of them also combines with plain ``dfa``
(``method_options: {per_point: true}`` for independent matrices per point).
"""
from .dfa import DFA
from .registry import register_variant

register_variant("dfa-sparse", DFA, "DFA with a sparse feedback matrix (10% of entries; single_connection: one per unit)",
                 density=0.1)
register_variant("dfa-sign", DFA, "DFA with a binary +-1 feedback matrix (scaled like the uniform one)",
                 distribution="sign")
