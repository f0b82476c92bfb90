"""Build every reporting output from the committed records into one folder, so two checkouts compare.

usage: python benchmarks/report_outputs.py OUT

Copies results/small, results/paper and results/probes into OUT/results and regenerates, from those
copies and with OUT as the working folder (so every output names `results/...` as the committed ones do),
what the reporting layer writes: the per-domain tables (`table --write`, with the tasks' figures), the
`reproduce --no-run` outputs, the `explain` report, the static leaderboard, every probe's README, and
what `table` prints in each format. A refactor of the reporting code that must not change behaviour is
checked by running this at the commit before and after it and comparing the two folders:

    python benchmarks/report_outputs.py /tmp/before   # at the old commit
    python benchmarks/report_outputs.py /tmp/after    # at the new one
    diff -r /tmp/before /tmp/after && echo identical
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORMATS = ("glance", "compact", "md", "latex", "csv")


def dfabench(cwd: Path, *args: str, stdout: Path | None = None) -> None:
    """One CLI call in ``cwd``."""
    # the leaderboard stamps its build's date and commit: fixed, so that two checkouts' builds compare
    env = {**os.environ, "TQDM_DISABLE": "1", "SOURCE_DATE_EPOCH": "0", "DFABENCH_GIT_COMMIT": "report-outputs",
           "DFABENCH_GIT_DIRTY": "0"}
    out = subprocess.run([sys.executable, "-m", "dfabench.cli", *args], cwd=cwd, text=True, capture_output=True,
                         env=env)
    if out.returncode != 0:
        sys.exit(f"dfabench {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()[-400:]}")
    if stdout is not None:
        stdout.write_text(out.stdout)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    out = Path(argv[0])
    if out.exists() and any(out.iterdir()):
        print(f"report_outputs: {out} is not empty", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    for name in ("small", "paper", "probes"):
        shutil.copytree(ROOT / "results" / name, out / "results" / name)
    baselines, small = str(ROOT / "baselines"), "results/small"
    dfabench(out, "table", "--results", small, "--write", "--baselines", baselines)
    dfabench(out, "reproduce", "--scale", "small", "--results", small, "--no-run", "--baselines", baselines)
    dfabench(out, "reproduce", "--scale", "paper", "--results", "results/paper", "--no-run", "--baselines", baselines)
    dfabench(out, "explain", "--results", small, "--scale", "small")
    dfabench(out, "leaderboard", "--results", small, "--html", "site", "--baselines", baselines)
    for probe in sorted(p.name for p in (out / "results" / "probes").iterdir() if (p / "runs").is_dir()):
        dfabench(out, "probe", probe, "--results", f"results/probes/{probe}", "--no-run")
    (out / "stdout").mkdir()
    for fmt in FORMATS:
        dfabench(out, "table", "--results", small, "--format", fmt, stdout=out / "stdout" / f"table-{fmt}.txt")
    # the records themselves are inputs, not outputs: drop them so the comparison is of what was written
    for runs in out.rglob("runs"):
        if runs.is_dir():
            shutil.rmtree(runs)
    print(f"wrote the reporting outputs under {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
