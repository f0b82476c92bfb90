"""Probe: how DFA's gap to BP on the synthetic click logs depends on how much of the planted logit
lies in the (rank-4) field interactions. The generator's balance is changed through its knobs
(tasks/ctr/data.py: first_order_std, first_order_every, interaction_scale), which are not
hyper-parameters, so this script is what tells the folders apart; each record's
`extras.planted` holds the resulting interaction share and AUC ceilings. The balance that was the
default when these ran (0.3, every 3rd field, 1.0) is now the stress test `ctr/synthetic-interactions`
(results/small); the records here are named `synthetic`, the cell this script runs them under.

    OMP_NUM_THREADS=1 python results/tuning/ctr-interaction-share/probe.py 0.5 1 1.0 SEED
"""
import sys
from pathlib import Path

import torch

import dfabench.tasks.ctr.data as logs
from dfabench.harness.plan import plan
from dfabench.harness.runner import run_one
from dfabench.harness.store import write_record

CELLS = ["lr:bp", "fm:bp"] + [f"{m}:{method}" for m in ("dcn", "deepfm", "autoint", "afn") for method in ("bp", "dfa")]

torch.set_num_threads(1)
first_std, first_every, inter_scale, seed = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
logs.SYNTHETIC_LOGS["synthetic"] = {"first_order_std": first_std, "first_order_every": first_every,
                                    "interaction_scale": inter_scale}
here = Path(__file__).parent / f"first{first_std}-every{first_every}-inter{inter_scale}"
for cell in CELLS:
    model, method = cell.split(":")
    runs, _ = plan([f"ctr/synthetic/{model}"], [method], "small", [seed])
    record = run_one(runs[0], here)
    write_record(here, record)
    print(here.name, model, method, seed, record["status"], round(record["metrics"]["test"]["auc"], 4), flush=True)
