"""The harness: plan runs, execute them, store one record per run."""
