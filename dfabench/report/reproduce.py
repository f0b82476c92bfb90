"""`dfabench reproduce --scale S`: run the paper's suite at one scale, then write one table per paper
table and the learning-curve and alignment figures under ``RESULTS/reproduce/``.

Each table has one row per cell and metric: our mean ± unbiased std (n) per method, each DFA variant's
gap to BP paired by seed with its 95% interval (``tables.wide``), and the published number for the same
model beside ours, from ``baselines/paper.yaml`` or ``baselines/biotorch.yaml``. Our datasets are
offline stand-ins, so the published columns name the dataset their numbers are for ("paper (Criteo)"),
and a number the files do not hold prints as ``unknown``.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..harness.executor import pending, run_local
from ..harness.plan import plan
from ..harness.store import iter_records
from ..hparams import ConfigError
from .plots import domain_figures, pyplot
from .published import load_published_by_source
from ..catalog import SCALES, specs
from .frame import VAL_PREFIX, VARIANT, metric_frame
from .tables import wide
from ..task import unavailable_tasks

SEEDS = {"smoke": 3, "small": 3, "paper": 1}  # default --seeds per scale
UNKNOWN = "unknown"
# Display names of the datasets published numbers are for (the middle part of a published cell).
DATASET_NAMES = {"criteo": "Criteo", "cora": "Cora", "citeseer": "CiteSeer", "pubmed": "PubMed",
                 "wikitext-103": "WikiText-103", "blender-lego": "Blender lego", "llff-fern": "LLFF fern",
                 "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}


@dataclass(frozen=True)
class PaperTable:
    """One of the paper's tables: which methods and metrics it shows, and where the published numbers
    of the same models are (cells of ``baselines/<source_file>.yaml``)."""

    name: str
    title: str
    methods: tuple[str, ...]
    metrics: tuple[str, ...]
    source: str  # label of the published columns, completed with their datasets: "paper (Criteo)"
    labels: dict[str, str] = field(default_factory=dict)  # method -> column label (default: upper-case bp)
    published_models: dict[str, str] = field(default_factory=dict)  # our model -> the publication's name
    published_methods: dict[str, str] = field(default_factory=dict)  # our method -> the publication's name
    source_file: str = "paper"
    models: tuple[str, ...] = ()  # row order (the paper's); models not named follow alphabetically
    cells: str = "*/*"  # dataset/model glob of the cells to run: every offline one
    over_shallow: tuple[str, ...] = ()  # methods whose paired gap to the shallow control is shown too

    def label(self, method: str) -> str:
        return self.labels.get(method, "BP" if method == "bp" else method)


TABLES: dict[str, PaperTable] = {
    "ctr": PaperTable(
        "table2_ctr", "Table 2: click-through-rate prediction (test AUC and logloss)",
        ("bp", "dfa", "shallow"), ("auc", "logloss"), "paper", labels={"dfa": "DFA"},
        models=("fm", "deepfm", "dcn", "autoint", "afn", "lr", "dcnv2")),
    "graph": PaperTable(
        "table3_graph", "Tables 3 and 4: graph convolutions (test accuracy) and graph autoencoder (AUC, AP)",
        ("bp", "dfa", "shallow"), ("accuracy", "auc", "ap"), "paper", labels={"dfa": "DFA"},
        models=("gcn", "cheb", "gat", "sage", "gae")),
    "lm": PaperTable(
        "table5_lm", "Table 5: Transformer language model (test and validation perplexity; the paper "
        "reports validation)",
        ("bp", "dfa", "dfa-micro", "shallow"), ("perplexity", "val:perplexity"), "paper",
        labels={"dfa": "DFA macro", "dfa-micro": "DFA micro"}, published_methods={"dfa": "dfa-macro"},
        models=("transformer", "gpt2-preln"), over_shallow=("dfa", "dfa-micro")),
    "nerf": PaperTable(
        "nerf", "NeRF: novel view synthesis (test PSNR and SSIM per scene)",
        ("bp", "dfa", "shallow"), ("psnr", "ssim"), "paper", labels={"dfa": "DFA"}),
    "vision": PaperTable(
        "vision", "CNNs (not in the paper): test top-1 error (%), biotorch's published numbers beside ours",
        ("bp", "dfa", "dfa-head", "hybrid", "fa", "shallow"), ("top1_error",), "biotorch",
        labels={"dfa": "DFA", "dfa-head": "DFA head", "hybrid": "hybrid BP/DFA", "fa": "FA"},
        source_file="biotorch", models=("lenet", "resnet")),
    "mlp": PaperTable(
        "mlp", "The DFA survey's MLP experiment and its ablations (test accuracy)",
        ("bp", "dfa", "shallow"), ("accuracy",), "survey", labels={"dfa": "DFA"}, models=("mlp",)),
}


def published_for_tables(baselines: Path) -> dict[str, dict]:
    """``{source: {cell: entry}}`` of the sources the paper tables read; paper.yaml must exist (without
    it every published number would print as unknown for no good reason)."""
    every = load_published_by_source(baselines, require="paper")
    return {name: every[name] for name in sorted({t.source_file for t in TABLES.values()}) if name in every}


def published_cell(table: PaperTable, entries: dict, domain: str, dataset: str, model: str) -> str | None:
    """The published cell for one of ours: the same cell when we ran the official dataset, else the
    first one the file lists for the same model (Cora before CiteSeer for a GCN on our CSBM)."""
    names = {model, table.published_models.get(model, model)}
    same_model = [c for c in entries if c.startswith(f"{domain}/") and c.rsplit("/", 1)[1] in names]
    own = f"{domain}/{dataset}/{model}"
    return own if own in entries else next(iter(same_model), None)


def published_value(entries: dict, cell: str | None, method: str, metric: str) -> str:
    entry = entries.get(cell) if cell else None
    values = entry.get(method) if isinstance(entry, dict) else None
    value = values.get(metric) if isinstance(values, dict) else None
    return str(value) if isinstance(value, (int, float)) else UNKNOWN  # as published, digits kept


def paper_table(table: PaperTable, domain: str, records: list[dict], published: dict[str, dict],
                directions: dict[str, bool]) -> pd.DataFrame:
    """Rows (dataset, model, metric) of one domain's records: ours per method, DFA-variant gaps to BP,
    then the published numbers for the same model."""
    entries = published.get(table.source_file, {})
    records = [r for r in records if r["domain"] == domain and r["method"] in table.methods]
    parts = [wide(frame, table.over_shallow) for metric in table.metrics
             if not (frame := metric_frame(records, metric, directions[metric])).empty]
    if not parts:
        return pd.DataFrame()
    ours = pd.concat(parts, ignore_index=True).fillna("")
    order = {m: i for i, m in enumerate(table.models)}
    ours = ours.assign(_model=ours.model.map(lambda m: (order.get(m, len(order)), m)),
                       _metric=ours.metric.map(lambda m: table.metrics.index(m.split()[0])))
    ours = ours.sort_values(["dataset", "_model", "_metric"], kind="stable")
    out = ours[["dataset", "model", *[c for c in VARIANT if c in ours], "metric"]].copy()  # variants: own rows
    if "floor" in ours:
        out["floor"] = ours["floor"].replace("", "—")
    for method in table.methods:
        out[table.label(method)] = ours[method].replace("", "—") if method in ours else "—"
    for method in table.methods:
        gap = f"{method}−bp"
        if method not in ("bp", "shallow") and gap in ours:
            out[f"{table.label(method)} − BP (95% CI)"] = ours[gap].replace("", "—")
    for method in table.over_shallow:
        if f"{method}−shallow" in ours:
            out[f"{table.label(method)} − shallow (95% CI)"] = ours[f"{method}−shallow"].replace("", "—")
    sources = [published_cell(table, entries, domain, d, m) for d, m in zip(ours.dataset, ours.model)]
    shown = sorted({c.split("/")[1] for c in sources if c})
    prefix = f"{table.source} ({', '.join(DATASET_NAMES.get(d, d) for d in shown)})" if shown else table.source
    out["published for"] = [c.split("/", 1)[1] if c else "—" for c in sources]
    for method in table.methods:
        theirs = table.published_methods.get(method, method)
        out[f"{prefix} {table.label(method)}"] = [published_value(entries, c, theirs, metric.split()[0])
                                                 for c, metric in zip(sources, ours.metric)]
    return out.reset_index(drop=True)


_LATEX = {"±": r"$\pm$", "−": "-", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "_": r"\_", "%": r"\%", "&": r"\&"}


def _latex_text(text: str) -> str:
    text = re.sub(r"\*\*(.*)\*\*", r"\\textbf{\1}", str(text))
    for plain, escaped in _LATEX.items():
        text = text.replace(plain, escaped)
    return text


def render_markdown(table: PaperTable, frame: pd.DataFrame, scale: str, notes: list[str]) -> str:
    lines = [f"# {table.title}, {scale} scale", ""]
    lines.append(frame.to_markdown(index=False, disable_numparse=True) if not frame.empty else "no ok records")
    lines += ["", "Ours: test metric at the best validation point (`val:` rows: that best validation value), "
                  "mean ± unbiased std over seeds (n), best in bold; floor: the trivial level the task reports "
                  "(chance, unigram perplexity); gap = method − BP paired by seed, ± 95% t-interval half-width. "
                  "Published: the same "
                  "model on the dataset named in the column (ours are offline stand-ins); `unknown` = not in "
                  f"baselines/{table.source_file}.yaml."]
    lines += [f"* {note}" for note in notes]
    return "\n".join(lines) + "\n"


def render_latex(frame: pd.DataFrame) -> str:
    latex = frame.map(_latex_text)
    latex.columns = [_latex_text(c) for c in frame.columns]
    return latex.to_latex(index=False)


def _directions(domain: str) -> dict[str, bool]:
    directions = {m.name: m.higher_is_better for m in specs()[domain].metrics}
    return {**directions, **{f"{VAL_PREFIX}{name}": higher for name, higher in directions.items()}}


def check_domains(domains: list[str] | None) -> list[str]:
    """The domains to reproduce: those asked for, or every available one; unknown ones are an error."""
    missing = unavailable_tasks()
    available = [d for d in specs() if d not in missing]
    for domain in domains or []:
        if domain in missing:
            raise ConfigError(f"domain {domain!r} is unavailable: {missing[domain]}")
        if domain not in available or domain not in TABLES:
            raise ConfigError(f"unknown domain {domain!r}; known: {', '.join(sorted(set(available) & set(TABLES)))}")
    if domains:
        return domains
    for domain, why in sorted(missing.items()):
        print(f"note: skipping {domain}: {why}", file=sys.stderr)
    return sorted(d for d in available if d in TABLES)


def plan_suite(domains: list[str], scale: str, seeds: int, check_data: bool = False):
    """Every offline cell of the domains with their table's methods; and the notes about (cell, method)
    pairs that do not apply (FM is BP only), which the tables repeat. ``check_data``: run the
    pre-flight data check (only where the suite will train)."""
    runs, notes = [], []
    for domain in domains:
        more, why = plan([f"{domain}/{TABLES[domain].cells}"], list(TABLES[domain].methods), scale, list(range(seeds)),
                         check_data=check_data)
        runs += more
        notes += why
    return runs, notes


def run_suite(runs: list, results: Path, device: str) -> int:
    """Run what is not recorded yet, with the suite's progress bar; returns run's exit code (1 after
    a grouped summary when a run ended in error)."""
    from ..harness.summary import summarize

    todo = pending(runs, results)
    print(f"{len(runs)} runs planned, {len(runs) - len(todo)} already recorded in {results}/runs, "
          f"{len(todo)} to run", file=sys.stderr)
    return summarize(run_local(todo, results, device))


def write_outputs(domains: list[str], scale: str, results: Path, baselines: Path,
                  notes: list[str] | None = None, out: Path | None = None, figures: bool = True) -> list[Path]:
    """Tables (markdown, LaTeX) and figures from the ``scale`` records under ``results``, into
    ``out`` (default ``results/reproduce``)."""
    published = published_for_tables(baselines)
    records = [r for r in iter_records(results) if r.get("scale") == scale]
    out = Path(out) if out is not None else Path(results) / "reproduce"
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for domain in domains:
        table = TABLES[domain]
        mine = [r for r in records if r["domain"] == domain and r["method"] in table.methods]
        if not mine:
            print(f"note: no {scale} records of {domain} under {results}/runs", file=sys.stderr)
            continue
        frame = paper_table(table, domain, mine, published, _directions(domain))
        domain_notes = [n for n in notes or [] if n.startswith(f"{domain}/")]
        for suffix, text in (("md", render_markdown(table, frame, scale, domain_notes)), ("tex", render_latex(frame))):
            path = out / f"{table.name}.{suffix}"
            path.write_text(text)
            written.append(path)
        if figures:
            written += domain_figures(domain, mine, table.methods, table.label, out / "figures")
    if figures and any(r.get("budget") for r in records):  # budgeted runs (--budget): the equal-compute report
        from .compute import write_report

        written += write_report(results, out / "compute")
    return written


def reproduce(scale: str, results: Path | None = None, seeds: int | None = None, device: str = "cpu",
              domains: list[str] | None = None, run: bool = True,
              baselines: Path = Path("baselines")) -> tuple[list[Path], int]:
    """The whole command: check the input, run what is missing (unless ``run`` is false), write the
    outputs. Returns what it wrote and the exit code (1 when a run ended in error)."""
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; known: {', '.join(SCALES)}")
    if seeds is not None and seeds < 1:
        raise ConfigError("--seeds must be at least 1")
    chosen = check_domains(domains)
    published_for_tables(baselines)  # fail on a missing baselines dir or matplotlib before hours of training
    pyplot()
    results = Path(results) if results is not None else Path("results") / scale
    runs, notes = plan_suite(chosen, scale, seeds or SEEDS[scale], check_data=run)
    code = run_suite(runs, results, device) if run else 0
    return write_outputs(chosen, scale, results, baselines, notes), code

