"""Probe: DFA on the synthetic logs with the feedback point on the embeddings switched off, so the
embeddings learn by local backpropagation through the first layer above them (cross layer, attention
layer, MLP) from the DFA signals delivered there. The point is retagged at build time, so the records
beside this file carry plain `dfa` hyper-parameters: this script is what tells them apart. The logs
are the stress test `synthetic-interactions`; the records, made before it had that name, say `synthetic`.

    OMP_NUM_THREADS=1 python results/tuning/ctr-dfa-embeddings/noembed-point/probe.py dcn   # or autoint
"""
import sys
from pathlib import Path

import torch

from dfabench.harness.plan import plan
from dfabench.harness.runner import run_one
from dfabench.harness.store import write_record
from dfabench.task import all_tasks

torch.set_num_threads(1)
model_name = sys.argv[1]
task = all_tasks()["ctr"]
build_as_usual = task.build_model


def build_without_embedding_point(model, hp, data):
    built = build_as_usual(model, hp, data)
    built.embed_point.tag = "embedding"  # not among dfa's tags: the point is the identity
    return built


task.build_model = build_without_embedding_point
runs, _ = plan([f"ctr/synthetic-interactions/{model_name}"], ["dfa"], "small", [0])
here = Path(__file__).parent
record = run_one(runs[0], here)
write_record(here, record)
print(model_name, record["status"], [round(h["val"]["auc"], 4) for h in record["history"]], record["metrics"]["test"])
