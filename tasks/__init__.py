"""The benchmark's tasks, one package per domain (installed as dfabench.tasks.<domain>)."""
