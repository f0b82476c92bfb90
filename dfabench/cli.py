"""The ``dfabench`` command.

Bad input (unknown selector, method, scale, config key, wrong type) prints one line on stderr and
exits with code 2 before anything is written.

Only the standard library is imported at start: each command imports what it needs (yaml and
pydantic to read a config, torch only to run), so `--help` and `list` answer at once.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import ConfigError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + error
        print(f"dfabench: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _split(value: list[str] | str) -> list[str]:
    from .harness.config import split_list

    return split_list(value)


def _check_device(device: str, will_run: bool) -> None:
    from .harness.config import check_device

    check_device(device, will_run)


def cmd_list(args: argparse.Namespace) -> int:
    # From the light specs only: no task, and so no torch, is imported.
    from .catalog import SCALES, listed_methods, specs, unavailable_reason
    from .data.sources import DOWNLOADABLE, INSTALLABLE, READY, SOURCES, cell_status, status

    from .catalog import method_entry_points

    methods_outside = []  # installed entry points and --method items: these import their code (and torch)
    if args.method or method_entry_points():
        from .methods.registry import describe

        methods_outside = describe(_split(args.method or []))
    statuses = {name: status(source) for name, source in SOURCES.items()}
    unavailable, not_ready = {}, 0
    for domain, spec in sorted(specs().items()):
        why = unavailable_reason(spec)
        if why:
            unavailable[domain] = why
            continue
        for dataset, model in spec.cells():
            methods = [m for m in listed_methods() if spec.method_applies(model, m)]
            state, commands = cell_status(spec, dataset, statuses)
            not_ready += state in (INSTALLABLE, DOWNLOADABLE)
            hint = "; ".join(commands) or f"the --set options in tasks/{domain}/README.md"
            data = state if state == READY else f"{state} ({hint})"
            named = "  (a probe's: runs only when named)" if model in spec.explicit_models else ""
            print(f"{domain}/{dataset}/{model}  methods={','.join(methods)}  scales={','.join(SCALES)}"
                  f"  primary={spec.primary_for(model)}  data={data}{named}")
    for line in methods_outside:
        print(line)
    for domain, why in sorted(unavailable.items()):
        print(f"# {domain}: unavailable: {why}")
    if not_ready:
        print(f"# {not_ready} cells lack data that can be installed: `dfabench data` lists each source, "
              f"`dfabench data install` installs them")
    return 0


def writable_results(path: Path, option: str = "--results") -> Path:
    """A folder to write into must be one this process can write into (or create): checked before
    anything runs, so a typo is not found after the first run has trained. Creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} is a file, not a folder")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{option} {path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: {probe} is not writable")
    return path


def existing_results(path: Path, option: str = "--results") -> Path:
    """A results folder to read: it must exist (a mistyped one would print an empty table)."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{option} {path}: no such folder" if not path.exists() else
                          f"{option} {path} is a file, not a folder")
    return path


def cmd_data(args: argparse.Namespace) -> int:
    from .data import commands

    if args.action == "install":
        return commands.install_command(args.names)
    if args.action == "download":
        if len(args.names) != 1:
            raise ConfigError("data download takes one name, e.g. dfabench data download fashion-mnist")
        return commands.download_command(args.names[0])
    if args.names:
        raise ConfigError("names go with install or download, e.g. dfabench data install movielens")
    return commands.show()


def cmd_run(args: argparse.Namespace) -> int:
    from . import startup

    startup.pause()  # until the first training loop begins (dfabench/startup.py)
    try:
        return _run(args)
    finally:
        startup.resume()


def _run(args: argparse.Namespace) -> int:
    from .harness.config import RUN_OPTIONS, run_config
    from .harness.suite import run_suite
    from .harness.summary import summarize

    config = run_config({key: getattr(args, key) for key in RUN_OPTIONS}, args.config)
    return summarize(run_suite(config, writable_results(Path(config.results))))


def cmd_table(args: argparse.Namespace) -> int:
    from .report.tables import table_text, write_all

    existing_results(Path(args.results))
    if args.at:
        return _table_at(args)
    if args.write:
        for path in write_all(Path(args.results), Path(args.baselines)):
            print(f"wrote {path}", file=sys.stderr)
        return 0
    sys.stdout.write(table_text(Path(args.results), args.format, args.scale, args.domain, args.cell, args.metric))
    return 0


def _table_at(args: argparse.Namespace) -> int:
    """`dfabench table --at flops|seconds [--write]`: the equal-compute report (dfabench/report/compute.py)."""
    from .report.compute import report, write_report
    from .harness.store import iter_records
    from .report.tables import select_records

    if args.write:  # every table and figure under RESULTS/compute/
        for path in write_report(Path(args.results)):
            print(f"wrote {path}", file=sys.stderr)
        return 0
    records = select_records(list(iter_records(Path(args.results))), args.scale, args.domain, args.cell)
    if not any(r.get("budget") for r in records):
        raise ConfigError(f"no budgeted record (dfabench run --budget) in {args.results}/runs matches")
    sys.stdout.write(report(records, args.at))
    return 0


LEADERBOARD_RESULTS = "results/small"  # what a fresh clone's leaderboard shows: the committed results


def cmd_leaderboard(args: argparse.Namespace) -> int:
    if not (args.html or args.wandb):
        raise ConfigError("leaderboard needs --html DIR and/or --wandb")
    if not args.results and not Path(LEADERBOARD_RESULTS).is_dir():
        raise ConfigError(f"no {LEADERBOARD_RESULTS} here (the committed results): run from the repository root "
                          "or pass --results DIR")
    folders = [existing_results(Path(f)) for f in args.results or [LEADERBOARD_RESULTS]]
    if args.html:
        writable_results(Path(args.html), "--html")
    if args.html:
        from .leaderboard.html import write_site

        pages = write_site(folders, Path(args.html), Path(args.baselines))
        print(f"wrote {len(pages)} pages under {args.html}", file=sys.stderr)
    if args.wandb:
        from .leaderboard.wandb_logging import publish_tables

        try:
            run_dir, keys = publish_tables(folders, Path(args.baselines))
        except RuntimeError as err:
            raise ConfigError(str(err)) from err
        print(f"published {len(keys)} W&B tables ({', '.join(keys) or 'nothing'}) in {run_dir}", file=sys.stderr)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from .harness.config import parse_set
    from .tune import tune_command

    tune_command(args.selectors, args.method, args.scale, args.samples, args.search, args.seeds, args.output,
                 Path(args.results) / "tune", parse_set(args.set or []))
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    """`dfabench baseline record --scale S --results DIR`: the gate's reference from existing records.
    With --method (one's own method, file.py:Class): first run what is missing of bp, dfa, shallow and
    that method on the cells (--cells, else those of the reference already at BASELINES/S), then record."""
    from .guards.check import parse_findings, record_reference

    findings = parse_findings(args.finding or [])
    if args.method:
        _check_device(args.device, will_run=True)
    results = writable_results(Path(args.results)) if args.method else existing_results(Path(args.results))
    out = record_reference(results, args.scale, Path(args.baselines), cells=_split(args.cells) if args.cells else None,
                           methods=_split(args.method) if args.method else None, seeds=args.seeds,
                           findings=findings, device=args.device)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """`dfabench check --scale S`: run what the reference covers and is missing, then exit 1 with one
    line per problem (0 when clean)."""
    from .guards.check import check, describe_table, load_reference

    if args.describe:
        sys.stdout.write(describe_table(load_reference(Path(args.baselines), args.scale)))
        return 0
    _check_device(args.device, will_run=not args.no_run)
    results = existing_results(Path(args.results)) if args.no_run else writable_results(Path(args.results))
    return check(results, args.scale, Path(args.baselines), run=not args.no_run, device=args.device,
                 methods=_split(args.method) if args.method else None, fail_fast=args.fail_fast)


def cmd_reproduce(args: argparse.Namespace) -> int:
    """`dfabench reproduce --scale S`: run the paper's suite at S (what is missing), then write one table
    per paper table and the figures under RESULTS/reproduce/."""
    from .report.reproduce import reproduce

    _check_device(args.device, will_run=not args.no_run)
    if not args.no_run:
        writable_results(Path(args.results) if args.results else Path("results") / args.scale)
    domains = _split(args.domains) if args.domains else None
    written, code = reproduce(args.scale, Path(args.results) if args.results else None, args.seeds, args.device,
                              domains, run=not args.no_run, baselines=Path(args.baselines))
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return code


def cmd_verify(args: argparse.Namespace) -> int:
    """`dfabench verify RESULTS`: re-run a sample of its records and compare (dfabench/guards/verify.py)."""
    from .guards.verify import verify_command

    results = existing_results(Path(args.results), "RESULTS")
    writable_results(results, "RESULTS")  # verification.json is written there
    _check_device(args.device, will_run=True)
    return verify_command(results, args.sample, args.seed, args.domain, args.max_seconds, args.device)


def cmd_explain(args: argparse.Namespace) -> int:
    from .report.explain import explain

    explain(existing_results(Path(args.results)), args.scale, Path(args.out) if args.out else None)
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from .report.probes import PROBES, run_probe

    if args.name is None:
        for probe in PROBES.values():
            print(f"{probe.name:15} {probe.title}")
        return 0
    _check_device(args.device, will_run=not args.no_run)
    readme, code = run_probe(args.name, Path(args.results) if args.results else None, args.device, run=not args.no_run)
    print(f"wrote {readme}", file=sys.stderr)
    return code


def cmd_records(args: argparse.Namespace) -> int:
    from .guards.records_check import check
    from .guards.rerun import rerun_command

    if args.action == "rerun":
        _check_device(args.device, will_run=not args.dry_run)
        return rerun_command(Path(args.folder), args.device, dry_run=args.dry_run)
    report = check(Path(args.folder), tuple(m for m in (args.need_methods or "").split(",") if m), args.domain,
                   clean=args.clean)
    for line in report.violations:
        print(line)
    print(report.summary())
    return 1 if report.violations else 0


def cmd_docs(args: argparse.Namespace) -> int:
    """`dfabench docs [--check]`: rebuild docs/results.md and docs/engine.md from the committed files."""
    from .report.pages import write_pages

    root = Path(args.root)
    if not (root / "results").is_dir() or not (root / "docs").is_dir():
        raise ConfigError(f"{root} has no results/ and docs/: run from the repository root or pass --root")
    written, stale = write_pages(root, check=args.check)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    for path in stale if args.check else ():
        print(f"stale: {path} is not what its sources give; run `dfabench docs`", file=sys.stderr)
    return 1 if args.check and stale else 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dfabench", description="Credit assignment without weight transport: BP, DFA and "
                                                  "friends on modern architectures, side by side.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("list", help="print every runnable cell with its methods, scales and whether its data is here")
    p.add_argument("--method", help="also list these methods from outside the package (path/to/file.py:Class, "
                                    "package.module:Class); installed dfabench.methods entry points always are")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("data", help="offline datasets: which are here, installing the rest (apt-get / pip), and "
                                    "checksummed official downloads")
    p.add_argument("action", nargs="?", choices=["status", "install", "download"], default="status",
                   help="status (default): ready / installable (with the command) / needs your files; install "
                        "[NAME...]: run those commands (all when no name); download NAME: the official files")
    p.add_argument("names", nargs="*", help="dataset sources, e.g. fashion-mnist movielens wiki-gensim kjv")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("run", help="run what is missing for SELECTOR... (domain/dataset/model, globs allowed)")
    p.add_argument("selectors", nargs="*", help="e.g. 'mlp/*/*'")
    p.add_argument("--method", help="comma-separated methods (default bp,dfa,shallow)")
    p.add_argument("--scale", help="smoke | small (default) | paper")
    p.add_argument("--seeds", type=int, help="number of seeds, 0..N-1 (default 1)")
    p.add_argument("--results", help="results directory (default results/)")
    p.add_argument("--device", help="cpu (default) | cuda")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a hyper-parameter for every run, e.g. --set epochs=3 --set method_options.scale=0")
    p.add_argument("--budget", help="stop each run when this is spent: flops=X, seconds=X (training seconds), or "
                                    "bp (= flops=bp) / seconds=bp: what BP's full run of that cell and seed spent "
                                    "(BP's runs go first); epochs extend as needed, schedules follow the budget")
    p.add_argument("--config", help="YAML file with any run option, by its name here: selectors, method, scale, "
                                    "seeds, results, device, set, budget, compile, executor, address, wandb")
    p.add_argument("--compile", action="store_true",
                   help="capture each training step (a CUDA graph on cuda, torch.compile on a CPU); same as "
                        "--set capture=true, so these runs get their own ids")
    p.add_argument("--executor", choices=["local", "ray"],
                   help="local (default): one run after another in this process; ray: Ray tasks")
    p.add_argument("--address", help="Ray cluster address (e.g. auto, ray://head:10001); default: a local Ray")
    p.add_argument("--wandb", action="store_true", help="also log each run to W&B (offline unless WANDB_MODE=online;"
                                                        " or set DFABENCH_WANDB=1)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("tune", help="search a cell's declared hyper-parameter space with Ray Tune (validation only)")
    p.add_argument("selectors", nargs="+", help="cells to tune, e.g. 'mlp/digits/mlp'")
    p.add_argument("--method", required=True)
    p.add_argument("--scale", default="small")
    p.add_argument("--samples", type=int, default=8, help="trials for random and asha searches")
    p.add_argument("--search", default="random", help="grid | random (default) | asha")
    p.add_argument("--seeds", type=int, default=1, help="seeds per trial (score = mean best validation value)")
    p.add_argument("--output", help="rules file to append the winner to (default: the task's tuned.yaml)")
    p.add_argument("--results", default="results", help="Ray Tune's trial files go under RESULTS/tune")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="fixed overrides for every trial")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("table", help="comparison table from the run records")
    p.add_argument("--results", default="results")
    p.add_argument("--format", choices=["glance", "compact", "md", "latex", "csv"], default="glance",
                   help="glance (default): one block per domain, a row per cell and method, units of the field; "
                        "compact: a row per cell, BP / DFA / shallow side by side (the README's form); "
                        "md / latex: the wide tables --write writes; csv: the long machine-readable form")
    p.add_argument("--cell", action="append", metavar="GLOB",
                   help="only cells matching domain/dataset/model (globs; repeat for more; compact keeps their order)")
    p.add_argument("--scale", help="only this scale")
    p.add_argument("--domain", help="only this domain")
    p.add_argument("--metric", help="a test metric instead of each task's table_metrics (ap, loss, ...), or "
                                    "'all': every metric the tasks declare")
    p.add_argument("--write", action="store_true", help="write RESULTS/tables/<domain>.md and .tex instead of printing "
                                                        "(with --at: RESULTS/compute/, every table and figure)")
    p.add_argument("--at", choices=["flops", "seconds"],
                   help="budgeted runs (run --budget) at equal compute: each method's best validation value within "
                        "BP's FLOPs or training seconds, paired by seed; time-to-target; performance profiles")
    p.add_argument("--baselines", default="baselines",
                   help="with --write: published numbers (paper.yaml, biotorch.yaml) shown under each domain's table")
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("leaderboard", help="static HTML site (--html DIR) and/or W&B tables (--wandb) from the records")
    p.add_argument("--results", action="append", metavar="DIR",
                   help=f"a results folder to show (default: {LEADERBOARD_RESULTS}, the committed small-scale "
                        "results); a --results replaces the default, and repeating it shows several folders "
                        f"together (add --results {LEADERBOARD_RESULTS} to keep the committed ones beside yours)")
    p.add_argument("--html", metavar="DIR", help="write index.html and one page per domain here")
    p.add_argument("--wandb", action="store_true", help="publish the summary and one wide table per domain and "
                                                        "metric to W&B (offline unless WANDB_MODE=online)")
    p.add_argument("--baselines", default="baselines", help="published numbers (paper.yaml, biotorch.yaml) "
                                                            "shown beside ours")
    p.set_defaults(func=cmd_leaderboard)
    p = sub.add_parser("baseline", help="record the gate's reference for `check` from existing records (or, with "
                                        "--method, after running one's own method beside bp, dfa and shallow)")
    p.add_argument("action", choices=["record"])
    p.add_argument("--scale", default="gate")
    p.add_argument("--results", default="results")
    p.add_argument("--baselines", default="baselines")
    p.add_argument("--cells", help="comma-separated domain/dataset/model (default: every cell of the records, or with "
                                   "--method those of the reference already in BASELINES/SCALE)")
    p.add_argument("--method", help="one's own method(s), path/to/file.py:Class: run it with bp, dfa and shallow "
                                    "on the cells (what is missing), then record")
    p.add_argument("--seeds", type=int, help="with --method: seeds 0..N-1 (default: the existing reference's)")
    p.add_argument("--finding", action="append", metavar="CELL:METHOD:TEST[|WHY]",
                   help="declare a method expected on its floor (and its mechanism test); kept on re-recording")
    p.add_argument("--device", default="cpu", help="cpu (default) | cuda: where --method's runs train")
    p.set_defaults(func=cmd_baseline)

    p = sub.add_parser("check", help="fail when a method's metric, a gap to BP or DFA's margin over shallow moved by "
                                     "more than seed noise explains, or a run failed, against BASELINES/SCALE")
    p.add_argument("--scale", default="gate")
    p.add_argument("--results", default="results")
    p.add_argument("--baselines", default="baselines")
    p.add_argument("--no-run", action="store_true", help="only read the records; do not run missing ones")
    p.add_argument("--method", help="where the reference's own methods are now (path/to/file.py:Class, by name)")
    p.add_argument("--fail-fast", action="store_true", help="run and check the cells one at a time, cheapest first, "
                                                            "and stop at the first failing one (the same exit status)")
    p.add_argument("--device", default="cpu", help="cpu (default) | cuda: where the missing runs train")
    p.add_argument("--describe", action="store_true", help="print how sharp the reference is (the smallest shift "
                                                           "each cell detects) and run nothing")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("reproduce", help="run the paper's suite at a scale, then write its tables and figures "
                                         "under RESULTS/reproduce/")
    p.add_argument("--scale", required=True, help="smoke | small | paper")
    p.add_argument("--results", help="results directory (default results/SCALE)")
    p.add_argument("--seeds", type=int, help="number of seeds, 0..N-1 (default 3; 1 at paper scale)")
    p.add_argument("--device", default="cpu", help="cpu (default) | cuda")
    p.add_argument("--domains", help="comma-separated domains (default: every available one)")
    p.add_argument("--baselines", default="baselines", help="folder of paper.yaml and biotorch.yaml")
    p.add_argument("--no-run", action="store_true", help="only build the tables and figures from existing records")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("verify", help="re-run a random sample of RESULTS' records from their recorded configuration "
                                      "and check the metrics agree; writes RESULTS/verification.json")
    p.add_argument("results", metavar="RESULTS", help="a results folder (with runs/)")
    p.add_argument("--sample", type=int, default=5, help="how many records to re-run (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random choice (default 0)")
    p.add_argument("--domain", help="choose only among this domain's records")
    p.add_argument("--max-seconds", type=float, help="choose only among records whose recorded wall_s is at most this")
    p.add_argument("--device", default="cpu", help="cpu (default) | cuda")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("explain", help="what goes with the DFA−BP gap per cell (alignment, output dimension, depth, "
                                       "norms, the shallow control): a report and figures from the records")
    p.add_argument("--results", default="results", help="records to read (default results/)")
    p.add_argument("--scale", help="only this scale")
    p.add_argument("--out", help="output folder (default RESULTS/explain)")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("probe", help="run one controlled probe (one factor varied) into results/probes/NAME and "
                                     "write its README; no NAME: list them")
    p.add_argument("name", nargs="?", help="output-dim | norm-placement | norm-site | depth | convolution")
    p.add_argument("--results", help="results directory (default results/probes/NAME)")
    p.add_argument("--device", default="cpu", help="cpu (default) | cuda")
    p.add_argument("--no-run", action="store_true", help="only rewrite the README from existing records")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("records", help="check: do the run records under FOLDER keep the record contract (exit 1 "
                                       "on a violation); rerun: make again, from this checkout, the records of "
                                       "FOLDER that no commit in its history reproduces (made from a modified "
                                       "tree, or at a commit outside the history)")
    p.add_argument("action", choices=["check", "rerun"])
    p.add_argument("folder", metavar="FOLDER")
    p.add_argument("--need-methods", help="check: comma-separated methods every cell must hold an ok run of")
    p.add_argument("--domain", help="check: only this domain's records")
    p.add_argument("--clean", action="store_true", help="check: a record no commit in this checkout's history "
                   "reproduces (made from a modified tree, or at a commit outside the history) is a violation")
    p.add_argument("--dry-run", action="store_true", help="rerun: list them, run nothing")
    p.add_argument("--device", default="cpu", help="rerun: the device to run on (default cpu)")
    p.set_defaults(func=cmd_records)

    p = sub.add_parser("docs", help="rebuild the generated pages docs/results.md (from the records) and docs/engine.md "
                                    "(from the benchmark outputs)")
    p.add_argument("--root", default=".", help="the repository root (default: here)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 when a page is stale")
    p.set_defaults(func=cmd_docs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"dfabench: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("dfabench: interrupted; finished runs are kept, the same command resumes", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
