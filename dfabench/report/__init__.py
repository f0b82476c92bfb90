"""Reporting: everything that turns run records into what people read. Reads records, never trains.

The layers, each importing only those above it:

* ``frame``      records → a pandas frame, one row per record and metric, grouped by the run identity
* ``summaries``  mean ± std per cell and method; gaps to BP paired by seed with their t-interval
* ``shares``     the share of BP's advantage over a valid shallow control a method keeps, bootstrapped
* ``domain_summary``  that share per method and domain (findings cells apart), for tables and leaderboard
* ``published``  the one reader of the published numbers (``baselines/paper.yaml``, ``biotorch.yaml``)
* outputs:
  ``tables`` (markdown / LaTeX / CSV, ``table --write``), ``glance`` and ``compact`` (what ``table``
  prints), ``plots`` (matplotlib helpers), ``reproduce`` (the paper's tables and figures),
  ``compute`` (equal-compute comparisons, time-to-target, performance profiles: ``table --at``),
  ``explain`` (what goes with the DFA−BP gap; ``architecture_facts`` for records older than the
  facts they now carry), ``probes`` (one-factor probes and their READMEs), ``pages`` (the generated
  docs pages).

The static and W&B leaderboard (``dfabench.leaderboard``) is built on the same layers. The guards
that re-run or judge records (the regression gate, ``verify``, ``records check``) live in
``dfabench.guards``.
"""
