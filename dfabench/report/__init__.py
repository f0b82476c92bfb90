"""Reporting: everything that turns run records into what people read. Reads records, never trains.

The layers, each importing only those above it:

* ``frame``      records → a pandas frame, one row per record and metric, grouped by the run identity
* ``summaries``  mean ± std per cell and method; gaps to BP paired by seed with their t-interval
* ``published``  the one reader of the published numbers (``baselines/paper.yaml``, ``biotorch.yaml``)
* outputs:
  ``tables`` (markdown / LaTeX / CSV, ``table --write``), ``glance`` and ``compact`` (what ``table``
  prints), ``plots`` (matplotlib helpers), ``reproduce`` (the paper's tables and figures),
  ``explain`` (what goes with the DFA−BP gap), ``probes`` (one-factor probes and their READMEs).

The static and W&B leaderboard (``dfabench.leaderboard``) is built on the same layers. The guards
that re-run or judge records (the regression gate, ``verify``) live in ``dfabench.guards``.
"""
