"""Calibrate the default `ctr/synthetic` logs by BP's margins (never by DFA's): run LR, FM, the deep
models by BP and DCN's shallow control on logs made with other generator knobs, then print the
margins the paper's Table 2 shows on Criteo (FM - LR; each deep model - FM; DCN shallow - FM).

    OMP_NUM_THREADS=1 python benchmarks/ctr_synthetic_balance.py run 0.4 1 0.8 --seeds 0 1 2
    python benchmarks/ctr_synthetic_balance.py margins

The knobs (tasks/ctr/data.py: first_order_std, first_order_every, interaction_scale,
interaction_rank, third_order_scale, interaction_pairs, fm_scale, fm_rank) are not hyper-parameters;
they enter a run's id as the logs' generator version (`CTRTask.generator_version`) and each record's
`extras.generator` and `extras.planted` hold what the logs it ran on were made with and contain. Each
balance still gets its own folder under results/tuning/ctr-criteo-shape/, for the margins below.
A record already in a folder is not run again.
"""
from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "results" / "tuning" / "ctr-criteo-shape"
DEEP = ("deepfm", "dcn", "autoint", "afn")
CELLS = ["lr:bp", "fm:bp", "dcn:shallow"] + [f"{m}:bp" for m in DEEP]


def folder_name(first_std: float, every: int, scale: float, rank: int, third: float, pairs: int,
                fm_scale: float = 0.0, fm_rank: int = 2) -> str:
    return (f"first{first_std}-every{every}-inter{scale}" + (f"-rank{rank}" if rank != 4 else "")
            + (f"-third{third}" if third != 0.4 else "") + (f"-pairs{pairs}" if pairs != 6 else "")
            + (f"-fm{fm_scale}" + (f"x{fm_rank}" if fm_rank != 2 else "") if fm_scale else ""))


def run(args) -> None:
    import torch

    import dfabench.tasks.ctr.data as logs
    from dfabench.harness.plan import plan
    from dfabench.harness.runner import run_one
    from dfabench.harness.store import record_path, write_record

    torch.set_num_threads(1)
    logs.SYNTHETIC_LOGS["synthetic"] = {"first_order_std": args.first_std, "first_order_every": args.every,
                                        "interaction_scale": args.scale, "interaction_rank": args.rank,
                                        "third_order_scale": args.third, "interaction_pairs": args.pairs,
                                        "fm_scale": args.fm_scale, "fm_rank": args.fm_rank}
    overrides = dict(item.split("=", 1) for item in args.set)
    here = OUT / (folder_name(args.first_std, args.every, args.scale, args.rank, args.third, args.pairs,
                              args.fm_scale, args.fm_rank)
                  + "".join(f"-{k}{v}" for k, v in sorted(overrides.items())))  # overrides: a folder apart
    cells = [c for c in CELLS if c.split(":")[0] not in args.skip and (not args.only or c in args.only)]
    for cell in cells:
        model, method = cell.split(":")
        runs, _ = plan([f"ctr/synthetic/{model}"], [method], "small", args.seeds, overrides=overrides)
        for spec in runs:
            if record_path(here, spec.id).exists():
                continue
            record = run_one(spec, here)
            write_record(here, record)
            print(here.name, model, method, spec.seed, record["status"],
                  round(record["metrics"]["test"]["auc"], 4), flush=True)


def margins(_args) -> None:
    """One line per balance: test AUC means over seeds, in AUC points (x100) against FM or LR."""
    for here in sorted(p for p in OUT.iterdir() if p.is_dir()):
        auc: dict[str, list[float]] = defaultdict(list)
        planted = None
        for path in sorted(here.glob("runs/*.json")):
            record = json.loads(path.read_text())
            if record["status"] == "ok":
                auc[f"{record['model']}:{record['method']}"].append(record["metrics"]["test"]["auc"])
                planted = record["extras"].get("planted")
        mean = {k: statistics.mean(v) for k, v in auc.items()}
        if "fm:bp" not in mean:
            continue
        points = lambda a, b: f"{100 * (mean[a] - mean[b]):+.2f}" if a in mean else "-"  # noqa: E731
        seeds = min(len(v) for v in auc.values())
        share = f"share {planted['interaction_share']:.2f} oracle {planted['oracle_auc']:.3f}" if planted else ""
        print(f"{here.name:34s} n>={seeds} {share} LR {mean.get('lr:bp', float('nan')):.4f} FM {mean['fm:bp']:.4f} "
              f"FM-LR {points('fm:bp', 'lr:bp') if 'lr:bp' in mean else '-'} | deep-FM "
              + " ".join(f"{m} {points(f'{m}:bp', 'fm:bp')}" for m in DEEP)
              + f" | DCN shallow-FM {points('dcn:shallow', 'fm:bp')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run", help="run the BP cells on logs with these knobs")
    go.add_argument("first_std", type=float)
    go.add_argument("every", type=int)
    go.add_argument("scale", type=float)
    go.add_argument("--rank", type=int, default=4)
    go.add_argument("--third", type=float, default=0.4, help="third_order_scale")
    go.add_argument("--pairs", type=int, default=6, help="interaction_pairs")
    go.add_argument("--fm-scale", type=float, default=0.0, help="fm_scale (a factorization machine's term)")
    go.add_argument("--fm-rank", type=int, default=2, help="fm_rank")
    go.add_argument("--seeds", type=int, nargs="+", default=[0])
    go.add_argument("--skip", nargs="*", default=[], help="models to leave out (e.g. autoint, the slowest)")
    go.add_argument("--only", nargs="*", default=[], help="cells to run, e.g. fm:bp (default: all)")
    go.add_argument("--set", nargs="*", default=[], help="hyper-parameter overrides, key=value (own run ids)")
    go.set_defaults(func=run)
    sub.add_parser("margins", help="print BP's margins per balance").set_defaults(func=margins)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
