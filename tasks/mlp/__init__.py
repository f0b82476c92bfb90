"""The DFA survey's MLP experiment (seeds/001, section 3) and its ablations."""
