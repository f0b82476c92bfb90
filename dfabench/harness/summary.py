"""What a suite's runs came to, for the person who started it: the exit code's reason, on stderr."""
from __future__ import annotations

import sys

EXIT_RUN_ERRORS = 1  # some run of the invocation ended in `error` (after a summary of why)


def summarize(records: list[dict]) -> int:
    """Print what did not end ok (errors grouped by cause, one line each) and return the exit code."""
    label = lambda r: f"{r['domain']}/{r['dataset']}/{r['model']} {r['method']} seed={r['seed']}"
    for r in records:
        if r["status"] in ("diverged", "timeout"):  # results, not failures
            print(f"{label(r)}: {r['status']}{': ' + r['error'] if r.get('error') else ''}", file=sys.stderr)
    causes: dict[str, list[dict]] = {}
    for r in records:
        if r["status"] == "error":
            causes.setdefault(str(r.get("error") or "unknown error").splitlines()[0], []).append(r)
    if not causes:
        return 0
    for cause, runs in causes.items():
        shown = ", ".join(label(r) for r in runs[:3]) + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")
        print(f"error in {len(runs)} run(s): {cause} ({shown})", file=sys.stderr)
    failed = sum(len(v) for v in causes.values())
    print(f"dfabench: {failed} of {len(records)} runs ended in error; their records hold the tracebacks, "
          f"and the same command retries them", file=sys.stderr)
    return EXIT_RUN_ERRORS
