"""`dfabench probe NAME`: controlled probes of why DFA works in one place and not in another.

Each probe varies one factor of one network on one data set and holds the rest fixed: the output
dimension of an MLP (a binary task read through 1, 2, 10 or 100 outputs), the placement of the
Transformer's LayerNorm (none, post-LN, pre-LN), the depth of the survey's MLP (2 to 16 hidden
layers), and whether DFA reaches a CNN's convolutions (``dfa``) or only its head (``dfa-head``).

A probe is declared here like a paper table in ``dfabench.report.reproduce``: its cells (one per level of
the factor), its methods, its scale and seeds. The command runs what is not recorded yet under
``results/probes/NAME/`` (the same planner, executor and store as ``run``), then writes that folder's
README.md: the command, and the table from the records (``tables.wide``: mean ± std per method, each
method's gap to BP paired by seed with its 95% interval), with the mean end-of-training ``grad_cos``
of each method beside it (``dfabench.report.explain``).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..catalog import specs
from ..harness.store import iter_records
from ..hparams import ConfigError
from .frame import metric_frame
from .tables import wide

RESULTS = Path("results") / "probes"


@dataclass(frozen=True)
class Probe:
    """One factor, its levels (one cell each, in order) and the methods compared at every level."""

    name: str
    title: str
    question: str
    factor: str  # the heading of the level column
    levels: dict[str, str]  # cell (domain/dataset/model) -> the factor's value there
    methods: tuple[str, ...]
    metrics: tuple[str, ...]  # test metrics, each its own rows
    notes: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()  # numbers of the records' extras shown per method (mean over seeds)
    scale: str = "small"
    seeds: int = 3

    @property
    def domain(self) -> str:
        return next(iter(self.levels)).split("/")[0]  # a probe's cells share one task

    def command(self) -> str:
        return f"dfabench probe {self.name}"


PROBES: dict[str, Probe] = {p.name: p for p in (
    Probe("output-dim", "Output dimension: one MLP, one binary task, 1 to 100 outputs",
          "Does the rank of DFA's feedback (the dimension of the error e) decide how close DFA comes to BP?",
          "outputs", {f"mlp/fashion-mnist/mlp-out{n}": str(n) for n in (1, 2, 10, 100)},
          ("bp", "dfa", "shallow"), ("accuracy",),
          ("The task: Fashion-MNIST class >= 5 (sandal, shirt, sneaker, bag, boot) or not; accuracy is that "
           "binary decision's. 1 output: one logit (binary cross-entropy); 2: two logits (cross-entropy); "
           "10 and 100: the two logits plus 8 or 98 outputs regressed onto a fixed random projection of the "
           "same binary target (tasks/mlp/models.py BinaryReadout), so every width holds the same information.",
           "Same MLP (784-256-256-k, ReLU, Adam), data, budget and seeds at every width.")),
    Probe("norm-placement", "Normalisation placement: no LN, post-LN, pre-LN in a small Transformer",
          "Does where the LayerNorm sits decide whether DFA trains a Transformer?",
          "LayerNorm", {"lm/kjv/transformer-noln": "none", "lm/kjv/transformer": "post-LN",
                        "lm/kjv/gpt2-preln": "pre-LN + final LN (GPT-2)"},
          ("bp", "dfa"), ("perplexity", "loss"),
          ("none and post-LN are the same network (the paper's Transformer, tasks/lm/models.py), with its two "
           "LayerNorms per block removed or kept. pre-LN is GPT-2 from transformers at the same size (2 layers, "
           "d_model 128, 4 heads, d_ff 512): it differs in more than the norm (GELU, learned positions, the "
           "error at the logits rather than at the decoder input), so that arm isolates less.",
           "The post-LN and pre-LN records are those of results/small (the same run ids), copied here.",
           "loss: the test cross-entropy in nats (log perplexity), which stays readable where a run blows up: "
           "the task caps perplexity at exp(50) = 5.18e21 (tasks/lm/task.py), so a run past 50 nats reads as that. "
           "stream_norm_end / shared_to_spread_end: the collapse signature at the last block's output after "
           "training (tasks/lm/README.md): the mean norm of a token's vector, and the norm of the component "
           "all tokens share over their spread around it."),
          extras=("stream_norm_end", "shared_to_spread_end")),
    Probe("depth", "Depth: the survey's MLP with 2, 4, 8 and 16 hidden layers",
          "Does DFA fall further behind BP as the network deepens?",
          "hidden layers", {"mlp/fashion-mnist/mlp": "2", **{f"mlp/fashion-mnist/mlp-depth{n}": str(n)
                                                            for n in (4, 8, 16)}},
          ("bp", "dfa", "shallow"), ("accuracy",),
          ("Hidden layers of 256, ReLU, Adam lr 1e-3, 5 epochs at every depth (tasks/mlp/hparams.yaml).",)),
    Probe("convolution", "Convolution: a CNN trained by DFA everywhere or in its head only",
          "Is it the convolutions that DFA cannot train?",
          "cell", {"vision/fashion-mnist/lenet": "LeNet, Fashion-MNIST", "vision/digits/lenet": "LeNet, digits"},
          ("bp", "dfa", "dfa-head", "shallow"), ("accuracy",),
          ("dfa: feedback to every point, those after the convolutional blocks included; dfa-head: feedback to "
           "the head's points only, BP inside the convolutional blocks (tasks/vision).",
           "LeNet only, to keep the probe's CPU time small; the ResNet cells of the same comparison are in "
           "results/small (vision table).")),
)}


def probe_records(probe: Probe, results: Path) -> list[dict]:
    """The records of the probe's cells, methods and scale under ``results``."""
    cells = set(probe.levels)
    return [r for r in iter_records(results) if f"{r['domain']}/{r['dataset']}/{r['model']}" in cells
            and r["method"] in probe.methods and r["scale"] == probe.scale]


def probe_table(probe: Probe, records: list[dict]) -> pd.DataFrame:
    """One row per level and metric: each method's mean ± std (n), its gap to BP paired by seed (± 95%
    CI), the mean end-of-training grad_cos of the methods that measure it, and the probe's extras."""
    from .explain import CONTROLS, end_alignment

    spec = specs()[probe.domain]
    parts = [wide(frame) for metric in probe.metrics
             if not (frame := metric_frame(records, metric, spec.metric(metric).higher_is_better)).empty]
    if not parts:
        return pd.DataFrame()
    table = pd.concat(parts, ignore_index=True).fillna("")
    cells = [f"{d}/{s}/{m}" for d, s, m in zip(table.domain, table.dataset, table.model)]
    table.insert(0, probe.factor, [probe.levels[c] for c in cells])
    table["_order"] = [(list(probe.levels).index(c), probe.metrics.index(m.split()[0]))
                       for c, m in zip(cells, table.metric)]
    alignment = end_alignment(records)
    for method in (m for m in probe.methods if m not in CONTROLS):  # BP's is 1, shallow's 0: no news
        values = [alignment.get((d, s, m, method), {}).get("grad_cos") for d, s, m in
                  zip(table.domain, table.dataset, table.model)]
        if any(v is not None for v in values):
            table[f"{method} grad_cos"] = ["—" if v is None else f"{v:.2f}" for v in values]
    for name in probe.extras:
        for method in probe.methods:
            table[f"{method} {name}"] = [_extra_mean(records, cell, method, name) for cell in cells]
    table = table.sort_values("_order").drop(columns=["_order", "scale", "domain"])
    return table.reset_index(drop=True)


def _extra_mean(records: list[dict], cell: str, method: str, name: str) -> str:
    values = [float(v) for r in records if r["status"] == "ok" and r["method"] == method
              and f"{r['domain']}/{r['dataset']}/{r['model']}" == cell
              and isinstance(v := (r.get("extras") or {}).get(name), (int, float))]
    return f"{sum(values) / len(values):.3g}" if values else "—"


def render_readme(probe: Probe, table: pd.DataFrame, results: Path) -> str:
    lines = [f"# Probe `{probe.name}`: {probe.title}", "", probe.question, "",
             "Re-run (runs only what is missing, then rewrites this file):", "", "```",
             probe.command() + (f" --results {results}" if Path(results) != RESULTS / probe.name else ""), "```",
             "", f"Cells: {', '.join(f'`{c}`' for c in probe.levels)}; methods: {', '.join(probe.methods)}; "
                 f"scale {probe.scale}; seeds 0..{probe.seeds - 1}. Records: `runs/`.", ""]
    lines += [f"* {note}" for note in probe.notes]
    lines += ["", "## Result (test metric at the best validation epoch)", ""]
    lines.append(table.to_markdown(index=False, disable_numparse=True) if not table.empty else "no ok records yet")
    lines += ["", "mean ± unbiased std over seeds (n), best in bold; gap = method − BP paired by seed, ± 95% "
                  "t-interval half-width (the numbers of `dfabench table`); grad_cos: cosine of each method's update with BP's gradient per "
                  "feedback point at the last alignment probe, averaged over points and seeds (— where the "
                  "task does not measure it)."]
    return "\n".join(lines) + "\n"


def write_readme(probe: Probe, results: Path) -> Path:
    path = Path(results) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_readme(probe, probe_table(probe, probe_records(probe, Path(results))), Path(results)))
    return path


def run_probe(name: str, results: Path | None = None, device: str = "cpu", run: bool = True) -> tuple[Path, int]:
    """The whole command: plan the probe's runs, run what is missing (unless ``run`` is false), write
    its README. Returns the README's path and the exit code (1 when a run ended in error)."""
    from ..harness.plan import plan
    from .reproduce import run_suite

    if name not in PROBES:
        raise ConfigError(f"unknown probe {name!r}; known: {', '.join(PROBES)}")
    probe = PROBES[name]
    results = Path(results) if results is not None else RESULTS / name
    code = 0
    if run:
        runs, notes = plan(list(probe.levels), list(probe.methods), probe.scale, list(range(probe.seeds)),
                           check_data=True)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        code = run_suite(runs, results, device)
    return write_readme(probe, results), code
