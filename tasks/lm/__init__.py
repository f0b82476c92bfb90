"""Transformer language modelling with BP, macro DFA and micro DFA (paper Table 5)."""
