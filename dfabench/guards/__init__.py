"""Guards on the records: the regression gate (``check``) and the re-runner (``verify``).

Both read records through ``dfabench.report``; ``verify`` re-runs records through the harness.
"""
