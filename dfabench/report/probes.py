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
    overrides: tuple[tuple[str, object], ...] = ()  # hyper-parameters set for every cell (the same budget)
    # cell -> the cell whose BP runs stand for its own: BP does not read the setting that tells them
    # apart (the error site), so the two would be the same run bit for bit (tested); not run twice
    bp_from: tuple[tuple[str, str], ...] = ()
    # the claims the README states, each worded from its interval (``effects``)
    quantities: tuple["Quantity", ...] = ()
    contrasts: tuple[tuple[str, str, str], ...] = ()  # (what changes, cell a, cell b): a − b per quantity
    finding: str = ""  # what the claims support, in words; tests/test_probes.py checks it against the records

    @property
    def domain(self) -> str:
        return next(iter(self.levels)).split("/")[0]  # a probe's cells share one task

    def command(self) -> str:
        return f"dfabench probe {self.name}"


@dataclass(frozen=True)
class Quantity:
    """One number per run that a probe's claims compare: a test metric, a record's extra, or the gap
    to BP paired by seed (``gap=True``); ``log10`` for norms that grow by orders of magnitude."""

    label: str
    method: str
    name: str  # a test metric or an extras key
    gap: bool = False
    log10: bool = False


ACCURACY_GAP = Quantity("DFA − BP test accuracy (paired by seed)", "dfa", "accuracy", gap=True)
OUTPUT_LEVELS = {f"mlp/fashion-mnist/mlp-out{n}": str(n) for n in (1, 2, 10, 100)}
DEPTH_LEVELS = {"mlp/fashion-mnist/mlp": "2", **{f"mlp/fashion-mnist/mlp-depth{n}": str(n) for n in (4, 8, 16)}}


def steps(levels: dict[str, str], unit: str) -> tuple[tuple[str, str, str], ...]:
    """The contrasts of consecutive levels: ("b − a UNIT", cell b, cell a)."""
    cells = list(levels)
    return tuple((f"{levels[b]} − {levels[a]} {unit}", b, a) for a, b in zip(cells, cells[1:]))


NORM_SITE_ARMS = {"lm/kjv/transformer": "post-LN / decoder input", "lm/kjv/transformer-logits": "post-LN / logits",
                  "lm/kjv/transformer-preln": "pre-LN / decoder input",
                  "lm/kjv/transformer-preln-logits": "pre-LN / logits"}

PROBES: dict[str, Probe] = {p.name: p for p in (
    Probe("output-dim", "Output dimension: one MLP, one binary task, 1 to 100 outputs",
          "Does the rank of DFA's feedback (the dimension of the error e) decide how close DFA comes to BP?",
          "outputs", OUTPUT_LEVELS,
          ("bp", "dfa", "shallow"), ("accuracy",),
          ("The task: Fashion-MNIST class >= 5 (sandal, shirt, sneaker, bag, boot) or not; accuracy is that "
           "binary decision's. 1 output: one logit (binary cross-entropy); 2: two logits (cross-entropy); "
           "10 and 100: the two logits plus 8 or 98 outputs regressed onto a fixed random projection of the "
           "same binary target (tasks/mlp/models.py BinaryReadout), so every width holds the same information.",
           "Same MLP (784-256-256-k, ReLU, Adam), data, budget and seeds at every width.",
           "The claims below compare the DFA − BP gap (paired by seed) between consecutive widths."),
          quantities=(ACCURACY_GAP,), contrasts=steps(OUTPUT_LEVELS, "outputs")),
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
    Probe("norm-site", "Normalisation placement x error site: the paper's Transformer in four arms",
          "Is it where the LayerNorm sits, or where DFA takes its error, that collapses the stream?",
          "LayerNorm / error at", NORM_SITE_ARMS,
          ("bp", "dfa"), ("perplexity", "loss"),
          ("One network, the paper's Transformer (tasks/lm/models.py: 2 layers, d_model 128, 4 heads, d_ff 512, "
           "ReLU, sinusoidal positions), two factors: the LayerNorm's placement (post: norm1(x + attn(x)), "
           "norm2(x + ff(x)); pre: x + attn(norm1(x)), x + ff(norm2(x)) and one final LayerNorm) and DFA's "
           "error site (the decoder's input, d_model wide, or the logits, 2,048 wide). Same data, width, "
           "budget (200 steps of 16 x 64 tokens, validated every 100) and seeds in every arm; alignment "
           "measured every 100 steps on one batch.",
           "BP does not read the error site: a logits arm's BP is its decoder-input arm's run, the same run "
           "bit for bit (tests/test_lm_task.py checks it), so it is run once per placement.",
           "residual_norm / residual_shared_to_spread: the collapse signature read at the same place in every "
           "arm, the last block's residual sum before any normalisation (tasks/lm/README.md), at the start "
           "(_start) and end (_end) of training. The claims below compare arms that differ in one factor, "
           "each with a Welch 95% interval over the seeds of the two arms."),
          extras=("residual_norm_start", "residual_norm_end", "residual_shared_to_spread_end"),
          overrides=(("epochs", 2), ("batch_size", 16), ("alignment_every", 1)),
          bp_from=(("lm/kjv/transformer-logits", "lm/kjv/transformer"),
                   ("lm/kjv/transformer-preln-logits", "lm/kjv/transformer-preln")),
          quantities=(Quantity("DFA's residual norm at the end (log10)", "dfa", "residual_norm_end", log10=True),
                      Quantity("DFA's shared-to-spread ratio at the end (log10)", "dfa",
                               "residual_shared_to_spread_end", log10=True),
                      Quantity("DFA − BP test loss (nats, paired by seed)", "dfa", "loss", gap=True)),
          contrasts=(("pre-LN − post-LN, error at the decoder input", "lm/kjv/transformer-preln", "lm/kjv/transformer"),
                     ("pre-LN − post-LN, error at the logits", "lm/kjv/transformer-preln-logits",
                      "lm/kjv/transformer-logits"),
                     ("logits − decoder input, post-LN", "lm/kjv/transformer-logits", "lm/kjv/transformer"),
                     ("logits − decoder input, pre-LN", "lm/kjv/transformer-preln-logits", "lm/kjv/transformer-preln")),
          finding=("The placement of the LayerNorm causes the collapse; the error site does not. At both error sites, "
                   "pre-LN makes DFA's residual stream grow by orders of magnitude more than post-LN (the log10 "
                   "norm's difference is supported, its interval far above 0) and widens DFA's loss gap to BP "
                   "(supported at both sites), and pre-LN DFA ends near or above the unigram floor while post-LN "
                   "DFA stays well below it. Moving the error from the decoder input to the logits changes DFA's "
                   "loss gap in neither placement (both intervals contain 0); under pre-LN it makes the stream "
                   "grow somewhat less (supported, far smaller than the placement's effect). The shared-to-spread "
                   "ratio is noisier: pre-LN raises it with the error at the logits (supported), not significantly "
                   "with the error at the decoder input (one seed of three ends at 3.9, the others at 98 and 132). "
                   "Where the evidence "
                   "stops: one corpus (kjv), one width (128), 2 layers, 200 steps of 16 x 64 tokens, 3 seeds per arm; "
                   "the pre-LN arms add one final LayerNorm the post-LN arms have no need of, so 'placement' here "
                   "means the pre-LN block with its final norm, as GPT-2 has it.")),
    Probe("depth", "Depth: the survey's MLP with 2, 4, 8 and 16 hidden layers",
          "Does DFA fall further behind BP as the network deepens?",
          "hidden layers", DEPTH_LEVELS,
          ("bp", "dfa", "shallow"), ("accuracy",),
          ("Hidden layers of 256, ReLU, Adam lr 1e-3, 5 epochs at every depth (tasks/mlp/hparams.yaml).",
           "The claims below compare the DFA − BP gap (paired by seed) between consecutive depths; BP itself "
           "changes with depth (see the bp column), so a step measures the gap, not DFA alone."),
          quantities=(ACCURACY_GAP,), contrasts=steps(DEPTH_LEVELS, "hidden layers")),
    Probe("convolution", "Convolution: a CNN trained by DFA everywhere or in its head only",
          "Is it the convolutions that DFA cannot train?",
          "cell", {"vision/fashion-mnist/lenet": "LeNet, Fashion-MNIST", "vision/digits/lenet": "LeNet, digits"},
          ("bp", "dfa", "dfa-head", "shallow"), ("accuracy",),
          ("dfa: feedback to every point, those after the convolutional blocks included; dfa-head: feedback to "
           "the head's points only, BP inside the convolutional blocks (tasks/vision).",
           "LeNet only, to keep the probe's CPU time small; the ResNet cells of the same comparison are in "
           "results/small (vision table).")),
)}


def _cell(record: dict) -> str:
    return f"{record['domain']}/{record['dataset']}/{record['model']}"


def probe_records(probe: Probe, results: Path) -> list[dict]:
    """The records of the probe's cells, methods and scale under ``results``; a cell of ``bp_from``
    gets its source cell's BP records, relabelled as its own (marked ``bp_from``)."""
    cells = set(probe.levels)
    found = [r for r in iter_records(results) if _cell(r) in cells
             and r["method"] in probe.methods and r["scale"] == probe.scale]
    for cell, source in probe.bp_from:
        domain, dataset, model = cell.split("/")
        found += [{**r, "model": model, "bp_from": source} for r in found if _cell(r) == source and r["method"] == "bp"
                  and "bp_from" not in r]
    return found


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


def quantity_values(records: list[dict], cell: str, q: Quantity) -> list[float]:
    """One value of ``q`` per seed of ``cell`` (ok runs); for a gap, the method's minus BP's, same seed."""
    import math

    def value(r: dict):
        v = (r.get("metrics") or {}).get("test", {}).get(q.name)
        v = (r.get("extras") or {}).get(q.name) if v is None else v
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None

    by = {m: {r["seed"]: value(r) for r in records if _cell(r) == cell and r["method"] == m and r["status"] == "ok"}
          for m in (q.method, "bp")}
    mine = by[q.method]
    if q.gap:
        pairs = {s: v - by["bp"][s] for s, v in mine.items() if v is not None and by["bp"].get(s) is not None}
        return [pairs[s] for s in sorted(pairs)]
    values = [mine[s] for s in sorted(mine) if mine[s] is not None and (not q.log10 or mine[s] > 0)]
    return [math.log10(v) for v in values] if q.log10 else values


def effects(probe: Probe, records: list[dict]) -> list[dict]:
    """Each contrast's difference (arm a − arm b) of each quantity's mean over seeds, with the Welch 95%
    interval, and its reading: "supported" only where the interval excludes zero."""
    from scipy import stats

    out = []
    for q in probe.quantities:
        for what, a, b in probe.contrasts:
            xa, xb = quantity_values(records, a, q), quantity_values(records, b, q)
            row = {"quantity": q.label, "contrast": what, "n": f"{len(xa)} vs {len(xb)}", "diff": None,
                   "low": None, "high": None, "reading": "not enough seeds (2 per arm needed)"}
            if len(xa) >= 2 and len(xb) >= 2:
                interval = stats.ttest_ind(xa, xb, equal_var=False).confidence_interval(0.95)
                diff = sum(xa) / len(xa) - sum(xb) / len(xb)
                low, high = float(interval.low), float(interval.high)
                row.update(diff=diff, low=low, high=high, reading=(
                    f"supported: {'higher' if low > 0 else 'lower'} in the first arm" if low > 0 or high < 0
                    else "not supported: the interval contains 0"))
            out.append(row)
    return out


def arm_lines(probe: Probe, records: list[dict]) -> list[str]:
    """Per arm, each quantity's mean over seeds with its 95% t-interval (what the contrasts compare)."""
    from scipy import stats

    lines = []
    for cell, level in probe.levels.items():
        parts = []
        for q in probe.quantities:
            x = quantity_values(records, cell, q)
            if len(x) >= 2:
                mean, sem = sum(x) / len(x), float(stats.sem(x))
                half = float(stats.t.ppf(0.975, len(x) - 1)) * sem
                parts.append(f"{q.label} {mean:+.3g} ± {half:.2g} (n={len(x)})")
            elif x:
                parts.append(f"{q.label} {x[0]:+.3g} (n=1)")
        lines.append(f"{level}: " + ("; ".join(parts) if parts else "no ok runs yet"))
    return lines


def render_readme(probe: Probe, table: pd.DataFrame, results: Path, records: list[dict] | None = None) -> str:
    lines = [f"# Probe `{probe.name}`: {probe.title}", "", probe.question, "",
             "Re-run (runs only what is missing, then rewrites this file):", "", "```",
             probe.command() + (f" --results {results}" if Path(results) != RESULTS / probe.name else ""), "```",
             "", f"Cells: {', '.join(f'`{c}`' for c in probe.levels)}; methods: {', '.join(probe.methods)}; "
                 f"scale {probe.scale}; seeds 0..{probe.seeds - 1}. Records: `runs/`.", ""]
    lines += [f"* {note}" for note in probe.notes]
    lines += ["", "## Result (test metric at the best validation epoch)", ""]
    lines.append(table.to_markdown(index=False, disable_numparse=True) if not table.empty else "no ok records yet")
    if probe.contrasts and records is not None:
        lines += ["", "## Per arm (mean over seeds ± 95% t-interval)", ""]
        lines += [f"* {line}" for line in arm_lines(probe, records)]
        lines += ["", "## Claims, each worded from its interval", "",
                  "Arm a − arm b of the mean over seeds, Welch 95% interval; *supported* only where it excludes 0.", "",
                  "| quantity | a − b | seeds | difference | 95% CI | reading |", "|---|---|---|---|---|---|"]
        for e in effects(probe, records):
            numbers = ("—", "—") if e["diff"] is None else (f"{e['diff']:+.3g}", f"[{e['low']:+.3g}, {e['high']:+.3g}]")
            lines.append(f"| {e['quantity']} | {e['contrast']} | {e['n']} | {numbers[0]} | {numbers[1]} | {e['reading']} |")
        if probe.finding:
            lines += ["", "## What the intervals support", "", probe.finding]
    lines += ["", "mean ± unbiased std over seeds (n), best in bold; gap = method − BP paired by seed, ± 95% "
                  "t-interval half-width (the numbers of `dfabench table`); grad_cos: cosine of each method's update with BP's gradient per "
                  "feedback point at the last alignment probe, averaged over points and seeds (— where the "
                  "task does not measure it)."]
    return "\n".join(lines) + "\n"


def write_readme(probe: Probe, results: Path) -> Path:
    path = Path(results) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    records = probe_records(probe, Path(results))
    path.write_text(render_readme(probe, probe_table(probe, records), Path(results), records))
    return path


def probe_runs(probe: Probe, check_data: bool = True) -> tuple[list, list[str]]:
    """The probe's planned runs: every level's methods at the probe's scale, seeds and overrides, BP
    once per network where levels differ only in what BP ignores (``bp_from``)."""
    from ..harness.plan import plan

    shared = dict(probe.bp_from)
    runs, notes = [], []
    for cell in probe.levels:
        methods = [m for m in probe.methods if not (m == "bp" and cell in shared)]
        more, why = plan([cell], methods, probe.scale, list(range(probe.seeds)),
                         overrides=dict(probe.overrides) or None, check_data=check_data)
        runs, notes = runs + more, notes + why
    return runs, notes


def run_probe(name: str, results: Path | None = None, device: str = "cpu", run: bool = True) -> tuple[Path, int]:
    """The whole command: plan the probe's runs, run what is missing (unless ``run`` is false), write
    its README. Returns the README's path and the exit code (1 when a run ended in error)."""
    from .reproduce import run_suite

    if name not in PROBES:
        raise ConfigError(f"unknown probe {name!r}; known: {', '.join(PROBES)}")
    probe = PROBES[name]
    results = Path(results) if results is not None else RESULTS / name
    code = 0
    if run:
        runs, notes = probe_runs(probe)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        code = run_suite(runs, results, device)
    return write_readme(probe, results), code
