"""The regression gate: compare fresh runs with a recorded reference, with tolerances from the seeds.

``reference(records)`` keeps, per cell (domain/dataset/model), each method's value per seed, and
from them four kinds of *quantity*: each method's own metric (BP's included), each method's gap to
BP paired by seed, DFA's margin over shallow paired by seed, and, where the runs measure it, each
method's alignment with BP's gradient at the end of training (``alignment.mean_grad_cos``: the
mechanism itself, which a damaged feedback path moves well before the metric does). ``failures(records, ref)`` re-derives
the same quantities from fresh runs of the same seeds and lists, one line each:

* a run that is not ok (diverged, timeout, error), or a cell with no ok runs;
* a quantity that **moved by more than seed noise explains**: Welch's t statistic of the new seeds'
  mean against the recorded seeds' mean, using both samples' spread, beyond the one-sided critical
  value at the per-test level. Worse (a regression) and better (a gap that closed: DFA behaving like
  BP is a bug until shown otherwise) both fail; an intended change records a new reference.
  The level is Bonferroni's: ``FAMILY_LEVEL`` split over every one-sided test the reference holds,
  so that a change leaving every distribution as it was fails the gate with probability at most
  ``FAMILY_LEVEL``. There is no fixed floor: the tolerance is as fine as the seeds allow;
* a metric at or beyond its trivial floor (``extras.floors``: chance, the unigram distribution, a
  random ranking for AUC) for every method but the shallow control, unless the reference declares it
  a **finding**: a cell and method expected on its floor (pre-LN DFA on the unigram floor), with the
  test that shows its mechanism. A declared finding fails the gate when it stops being one.

``detectable(ref)`` is, per quantity, the smallest shift the gate flags when the new runs spread as
the recorded ones did: the critical t times the standard error of the difference of the means.

``record_reference`` and ``check`` are the commands `dfabench baseline record` and `dfabench check`.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Iterable

FAMILY_LEVEL = 0.05  # chance that an unchanged suite (new seeds' noise only) fails anywhere
FORMAT = 2


def base_method(method: str) -> str:
    """An outside method's key without its code hash ('mine@1a2b3c4d' -> 'mine'): an edited method is
    compared with its own recorded reference, not dropped as a new method."""
    return method.split("@", 1)[0]


def _cell(record: dict) -> str:
    return f"{record['domain']}/{record['dataset']}/{record['model']}"


def _alignment(record: dict) -> float:
    """The run's last measured cosine between its hidden layers' updates and BP's gradient (nan: none)."""
    value = (record.get("alignment") or {}).get("mean_grad_cos")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.nan


ALIGNMENT = " alignment"  # the suffix of an alignment quantity's name ('dfa alignment')


def _value(record: dict) -> float:
    metric = record.get("primary_metric")
    value = ((record.get("metrics") or {}).get("test") or {}).get(metric)
    return float(value) if isinstance(value, (int, float)) else math.nan


def _gate_records(records: Iterable[dict]) -> list[dict]:
    """Records of the gate's own configuration: no user overrides, no user data."""
    return [r for r in records if not r.get("overrides") and r.get("data") is None]


def _per_seed(records: list[dict]) -> dict[str, dict[str, Any]]:
    """cell -> {'metric', 'higher_is_better', 'values': {method: {seed: value}}, 'alignment' (the same,
    where measured), 'specs', 'floors'}; ok runs."""
    cells: dict[str, dict[str, Any]] = {}
    for r in records:
        if r["status"] != "ok" or not math.isfinite(_value(r)):
            continue
        cell = cells.setdefault(_cell(r), {"metric": r["primary_metric"],
                                           "higher_is_better": bool(r.get("higher_is_better", True)),
                                           "values": {}, "alignment": {}, "specs": {}, "floors": {},
                                           "wall_s": 0.0})
        cell["wall_s"] += float((r.get("timings") or {}).get("wall_s") or 0.0)
        method = base_method(r["method"])
        cell["values"].setdefault(method, {})[int(r["seed"])] = _value(r)
        if math.isfinite(_alignment(r)):
            cell["alignment"].setdefault(method, {})[int(r["seed"])] = _alignment(r)
        if (r.get("method_origin") or {}).get("spec"):
            cell["specs"][method] = r["method_origin"]["spec"]
        floor = ((r.get("extras") or {}).get("floors") or {}).get(r["primary_metric"])
        if floor:
            cell["floors"] = {r["primary_metric"]: floor}
    return cells


def _paired(values: dict[str, dict[int, float]], a: str, b: str) -> list[float]:
    """a − b per seed both ran, in seed order."""
    x, y = values.get(a, {}), values.get(b, {})
    return [x[s] - y[s] for s in sorted(set(x) & set(y))]


def quantities(values: dict[str, dict[int, float]], alignment: dict[str, dict[int, float]] | None = None
               ) -> dict[str, list[float]]:
    """The samples the gate compares: 'bp' (a method's metric per seed), 'dfa−bp' (paired gap),
    'dfa−shallow' (DFA's margin over the shallow control), 'dfa alignment' (its final alignment with
    BP's gradient, per seed, where measured)."""
    out = {m: [v[s] for s in sorted(v)] for m, v in sorted(values.items())}
    if "bp" in values:
        out.update({f"{m}−bp": _paired(values, m, "bp") for m in sorted(values) if m != "bp"})
    if "dfa" in values and "shallow" in values:
        out["dfa−shallow"] = _paired(values, "dfa", "shallow")
    out.update({f"{m}{ALIGNMENT}": [v[s] for s in sorted(v)] for m, v in sorted((alignment or {}).items())})
    return {k: v for k, v in out.items() if v}


def _mean_std(xs: list[float]) -> tuple[float, float]:
    n = len(xs)
    mean = sum(xs) / n
    return mean, math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0


def reference(records: Iterable[dict], findings: dict[str, dict[str, dict]] | None = None,
              previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The reference the gate compares against, from healthy records of one scale.

    ``findings``: {cell: {method: {'mechanism': test id, 'why': text}}}, declared expected-on-floor
    results; those of ``previous`` (the reference being replaced) are kept, so re-recording never
    drops one silently."""
    records = _gate_records(records)
    scales = sorted({r["scale"] for r in records})
    declared: dict[str, dict[str, dict]] = {}
    for source in ((previous or {}).get("cells") or {}, {c: {"findings": f} for c, f in (findings or {}).items()}):
        for cell, entry in source.items():
            for method, finding in (entry.get("findings") or {}).items():
                declared.setdefault(cell, {})[method] = dict(finding)
    cells = {}
    for cell, seen in sorted(_per_seed(records).items()):
        qs = quantities(seen["values"], seen["alignment"])
        entry = {"metric": seen["metric"], "higher_is_better": seen["higher_is_better"],
                 "floors": seen["floors"],
                 "methods": sorted(seen["values"]),
                 "seeds": sorted(set().union(*(set(v) for v in seen["values"].values()))),
                 "wall_s": round(seen["wall_s"], 1),  # what its runs took: the gate runs cheap cells first
                 "quantities": {}}
        if seen["specs"]:
            entry["method_specs"] = dict(sorted(seen["specs"].items()))
        for name, xs in qs.items():
            mean, std = _mean_std(xs)
            entry["quantities"][name] = {"values": xs, "mean": mean, "std": std, "n": len(xs)}
        if cell in declared:
            entry["findings"] = {m: f for m, f in declared[cell].items()}
        cells[cell] = entry
    ref = {"format": FORMAT, "scale": scales[0] if len(scales) == 1 else scales, "family_level": FAMILY_LEVEL,
           "cells": cells}
    ref["per_test_level"] = per_test_level(ref)
    return ref


def cell_order(ref: dict[str, Any]) -> list[str]:
    """The cells, cheapest first (by the recorded runs' wall time): --fail-fast stops early on cheap ones."""
    return sorted(ref["cells"], key=lambda cell: (ref["cells"][cell].get("wall_s", 0.0), cell))


def only(ref: dict[str, Any], cell: str) -> dict[str, Any]:
    """``ref`` restricted to one cell, at the whole reference's per-test level (its verdict on that cell
    is the whole gate's)."""
    return {**ref, "cells": {cell: ref["cells"][cell]}, "per_test_level": ref.get("per_test_level") or per_test_level(ref)}


def n_tests(ref: dict[str, Any]) -> int:
    """Every one-sided test the gate makes: two (worse, better) per quantity with a spread."""
    return 2 * sum(q["n"] > 1 for c in ref["cells"].values() for q in c["quantities"].values())


def per_test_level(ref: dict[str, Any]) -> float:
    return FAMILY_LEVEL / max(1, n_tests(ref))


def _t_crit(level: float, dof: float) -> float:
    from scipy import stats

    return float(stats.t.ppf(1.0 - level, dof))


def _welch(old: list[float], new: list[float]) -> tuple[float, float, float]:
    """(difference of means new − old, its standard error, Welch–Satterthwaite degrees of freedom)."""
    (m0, s0), (m1, s1) = _mean_std(old), _mean_std(new)
    v0, v1 = s0 ** 2 / len(old), s1 ** 2 / len(new)
    se = math.sqrt(v0 + v1)
    terms = (v0 ** 2 / (len(old) - 1) if len(old) > 1 else 0.0) + (v1 ** 2 / (len(new) - 1) if len(new) > 1 else 0.0)
    dof = (v0 + v1) ** 2 / terms if terms > 0 else max(1, len(old) + len(new) - 2)
    return m1 - m0, se, dof


def detectable(ref: dict[str, Any]) -> dict[str, dict[str, float]]:
    """cell -> quantity -> the smallest shift (metric units) flagged at the per-test level when the new
    seeds spread as the recorded ones."""
    level = ref.get("per_test_level") or per_test_level(ref)
    out: dict[str, dict[str, float]] = {}
    for cell, entry in ref["cells"].items():
        for name, q in entry["quantities"].items():
            if q["n"] > 1:
                out.setdefault(cell, {})[name] = _t_crit(level, 2 * (q["n"] - 1)) * q["std"] * math.sqrt(2 / q["n"])
    return out


def failures(records: Iterable[dict], ref: dict[str, Any]) -> list[str]:
    """One line per problem of ``records`` against ``ref`` (empty: the gate passes)."""
    cells = ref["cells"]
    records = [r for r in _gate_records(records) if _cell(r) in cells]
    problems = [f"{_cell(r)} {r['method']} seed {r['seed']}: run {r['status']}"
                + (f" ({r['error']})" if r.get("error") else "") for r in records if r["status"] != "ok"]
    problems += _floor_failures(records, cells)
    level = ref.get("per_test_level") or per_test_level(ref)
    now = _per_seed(records)
    for cell, entry in sorted(cells.items()):
        current = now.get(cell)
        if current is None:
            problems.append(f"{cell}: no ok records to check")
            continue
        missing = sorted(set(entry["methods"]) - set(current["values"]))
        problems += [f"{cell}: {m}: no ok records to check" for m in missing]
        new_qs = quantities(current["values"], current["alignment"])
        for name, old in entry["quantities"].items():
            # gaps and margins follow the metric's direction; an alignment is better higher
            sign = 1.0 if entry["higher_is_better"] or name.endswith(ALIGNMENT) else -1.0
            new = new_qs.get(name)
            if not new and name.endswith(ALIGNMENT) and name[:-len(ALIGNMENT)] in current["values"]:
                problems.append(f"{cell}: {name}: recorded, but the new runs measure none")
                continue
            if not new or old["n"] < 2 or len(new) < 2:
                continue
            diff, se, dof = _welch(old["values"], new)
            crit = _t_crit(level, dof)
            # no spread at all (a deterministic quantity): any change beyond float rounding is one
            se = max(se, 1e-9 * max(1.0, abs(old["mean"])))
            t = sign * diff / se
            if abs(t) > crit:
                what = "worse" if t < 0 else "better"
                problems.append(f"{cell}: {name} {sum(new) / len(new):+.4g} (n={len(new)}), recorded "
                                f"{old['mean']:+.4g} ± {old['std']:.2g} (n={old['n']}): {what} by {abs(diff):.3g}, "
                                f"t={abs(t):.2f} > {crit:.2f} (one-sided level {level:.2g})"
                                + ("" if what == "worse" else "; if intended, record a new reference"))
    return problems


def _floor_failures(records: list[dict], cells: dict[str, Any]) -> list[str]:
    """A method on its floor fails, unless the reference declares it a finding; a declared finding
    that left its floor fails too."""
    problems = []
    for r in records:
        if r["status"] != "ok" or r["method"] == "shallow":  # the control is allowed to be trivial
            continue
        finding = (cells.get(_cell(r), {}).get("findings") or {}).get(base_method(r["method"]))
        test = (r.get("metrics") or {}).get("test") or {}
        floors = dict(((r.get("extras") or {}).get("floors") or {}))
        if "auc" in test:
            floors.setdefault("auc", {"value": 0.5, "what": "a random ranking", "higher_is_better": True})
        for metric, floor in floors.items():
            value = test.get(metric)
            if value is None:
                continue
            higher = floor.get("higher_is_better", True)
            on_floor = (value <= floor["value"]) if higher else (value >= floor["value"])
            where = (f"{_cell(r)} {r['method']} seed {r['seed']}: {metric} {value:.4g} is "
                     f"{'not above' if higher else 'not below'} {floor['what']} ({floor['value']:.4g})")
            if on_floor and not finding:
                problems.append(where)
            elif finding and metric == r["primary_metric"] and not on_floor:
                problems.append(f"{_cell(r)} {r['method']} seed {r['seed']}: the declared finding "
                                f"'{finding.get('why', 'on its floor')}' changed: {metric} {value:.4g} is "
                                f"{'above' if higher else 'below'} {floor['what']} ({floor['value']:.4g}); "
                                f"see {finding.get('mechanism', 'its mechanism test')}")
    return problems


def describe(ref: dict[str, Any]) -> list[str]:
    """The gate's statement, one line per cell: its seeds and the smallest regression it detects."""
    lines = [f"gate: {n_tests(ref)} one-sided tests at level {ref.get('per_test_level', per_test_level(ref)):.2g} "
             f"each (family-wise {ref.get('family_level', FAMILY_LEVEL)}); detectable shift per quantity, "
             f"in the metric's units:"]
    found = detectable(ref)
    for cell, entry in sorted(ref["cells"].items()):
        parts = ", ".join(f"{name} {d:.3g}" for name, d in found.get(cell, {}).items())
        declared = "".join(f"; finding: {m} on its floor ({f.get('mechanism', '?')})"
                           for m, f in (entry.get("findings") or {}).items())
        lines.append(f"  {cell} ({entry['metric']}, {len(entry['seeds'])} seeds): {parts}{declared}")
    return lines


def describe_table(ref: dict[str, Any]) -> str:
    """The gate's sharpness as a markdown table: per cell, its seeds and the smallest shift it detects in
    BP's metric, DFA's gap to BP, DFA's margin over shallow, DFA's alignment, and the further methods'
    own metric (`dfabench check --describe`; the README quotes it)."""
    found = detectable(ref)

    def shift(cell: str, name: str) -> str:
        return f"{found[cell][name]:.3g}" if name in found.get(cell, {}) else "—"

    lines = [f"{n_tests(ref)} one-sided tests at level {ref.get('per_test_level', per_test_level(ref)):.2g} each "
             f"(family-wise {ref.get('family_level', FAMILY_LEVEL)}); the smallest shift each detects, in the "
             f"metric's units (an alignment is a cosine):", "",
             "| cell (metric) | seeds | bp | dfa−bp | dfa−shallow | dfa alignment | further methods |",
             "|---|---|---|---|---|---|---|"]
    for cell, entry in sorted(ref["cells"].items()):
        # a method with no BP beside it (a declared finding's cell) is guarded on its own metric
        own = [m for m in entry["methods"] if m not in ("bp", "shallow") and (m != "dfa" or "bp" not in entry["methods"])]
        further = ", ".join(f"{m} {shift(cell, m)}" for m in own)
        declared = "; ".join(f"finding: {m} on its floor" for m in (entry.get("findings") or {}))
        lines.append(f"| `{cell}` ({entry['metric']}) | {len(entry['seeds'])} | {shift(cell, 'bp')} | {shift(cell, 'dfa−bp')} | "
                     f"{shift(cell, 'dfa−shallow')} | {shift(cell, 'dfa alignment')} | "
                     f"{'; '.join(x for x in (further, declared) if x) or '—'} |")
    return "\n".join(lines) + "\n"


# --- the commands -----------------------------------------------------------------------------------

def reference_path(baselines: Path, scale: str) -> Path:
    return Path(baselines) / scale / "reference.json"


def parse_findings(items: list[str]) -> dict[str, dict[str, dict]]:
    """--finding domain/dataset/model:method:mechanism-test[|why] -> {cell: {method: {mechanism, why}}}."""
    from ..errors import ConfigError

    out: dict[str, dict[str, dict]] = {}
    for item in items:
        cell, _, rest = item.partition(":")
        method, _, test = rest.partition(":")
        mechanism, _, why = test.partition("|")
        if cell.count("/") != 2 or not method or not mechanism:
            raise ConfigError(f"--finding {item!r}: expected domain/dataset/model:method:mechanism-test[|why]")
        out.setdefault(cell, {})[method] = {"mechanism": mechanism, "why": why or "on its floor"}
    return out


def _run_missing(cells: dict[str, tuple[list[str], int]], scale: str, results: Path, device: str) -> None:
    """Run what is missing of each cell's (methods, number of seeds) into ``results``, by the path
    `dfabench run` takes."""
    from ..harness.config import run_config
    from ..harness.suite import run_suite

    for cell, (methods, seeds) in sorted(cells.items()):
        config = run_config({"selectors": [cell], "method": ",".join(methods), "scale": scale, "seeds": seeds,
                             "results": str(results), "device": device})
        print(f"check: {cell}", file=sys.stderr)
        run_suite(config, results)


def _scale_records(results: Path, scale: str) -> list[dict]:
    from ..harness.store import iter_records

    return [r for r in iter_records(results) if r.get("scale") == scale]


def record_reference(results: Path, scale: str, baselines: Path, cells: list[str] | None = None,
                     methods: list[str] | None = None, seeds: int | None = None,
                     findings: dict[str, dict[str, dict]] | None = None, device: str = "cpu") -> Path:
    """Write the gate's reference of ``results``' records at ``scale`` into ``baselines/SCALE/``.

    With ``methods`` (one's own, path/to/file.py:Class): first run what is missing of bp, dfa, shallow and
    those methods on ``cells`` (default: the cells of the reference already there), ``seeds`` seeds
    (default: the most that reference has). A non-shallow method on its floor must be declared in
    ``findings`` (or by the reference it replaces)."""
    from ..errors import ConfigError

    out = reference_path(baselines, scale)
    previous = json.loads(out.read_text()) if out.exists() else None
    if methods:
        cells = cells or sorted((previous or {}).get("cells", {}))
        if not cells:
            raise ConfigError(f"no cells to record: name them with --cells (no reference at {out})")
        seeds = seeds or max([len(c["seeds"]) for c in (previous or {}).get("cells", {}).values()] or [3])
        _run_missing({c: (["bp", "dfa", "shallow", *methods], seeds) for c in cells}, scale, results, device)
    records = [r for r in _scale_records(results, scale)
               if cells is None or f"{r['domain']}/{r['dataset']}/{r['model']}" in cells]
    ref = reference(records, findings, previous)
    if not ref["cells"]:
        raise ConfigError(f"no ok {scale} records under {results}/runs" + (f" for {', '.join(cells)}" if cells else ""))
    undeclared = _floor_failures([r for r in records if r["status"] == "ok"], ref["cells"])
    if undeclared:
        raise ConfigError(f"{undeclared[0]}: declare it with --finding CELL:METHOD:MECHANISM_TEST "
                          f"if it is an expected result, or fix it")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(ref, indent=1, sort_keys=True) + "\n")
    for line in describe(ref):
        print(line, file=sys.stderr)
    return out


def outside_methods(items: list[str]) -> dict[str, str]:
    """--method a.py:A,b.py:B -> {name: spec} by each class's ``name`` (the key without its hash)."""
    from ..errors import ConfigError
    from ..methods.registry import resolve as resolve_method

    out = {}
    for item in items:
        key, spec, _ = resolve_method(item)
        if spec is None:
            raise ConfigError(f"--method {item!r} is a built-in method; check runs the reference's methods")
        out[base_method(key)] = item
    return out


def load_reference(baselines: Path, scale: str) -> dict[str, Any]:
    from ..errors import ConfigError

    ref_path = reference_path(baselines, scale)
    if not ref_path.exists():
        raise ConfigError(f"no reference at {ref_path}; run `dfabench baseline record --scale {scale}`")
    ref = json.loads(ref_path.read_text())
    if ref.get("format") != FORMAT:
        raise ConfigError(f"{ref_path} is an old reference (no per-seed values); record it again with "
                          f"`dfabench baseline record --scale {scale}`")
    return ref


def check(results: Path, scale: str, baselines: Path, run: bool = True, device: str = "cpu",
          methods: list[str] | None = None, fail_fast: bool = False) -> int:
    """The gate: run what the reference covers and ``results`` lacks (the same path as `dfabench run`),
    cheapest cell first, print each cell's detectable shift and one line per problem, and return the
    exit code (1 on any problem). ``methods``: where the reference's outside methods are now, matched
    by name. ``fail_fast``: check each cell once it has run and stop at the first failing one (the
    verdict is the same: cells are judged independently, at the whole reference's level)."""
    ref_path = reference_path(baselines, scale)
    ref = load_reference(baselines, scale)
    given = outside_methods(methods or [])
    for line in describe(ref):
        print(line, flush=True)
    problems: list[str] = []
    order = cell_order(ref)
    for done, cell in enumerate(order, 1):
        entry = ref["cells"][cell]
        if run:
            specs = {**entry.get("method_specs", {}), **given}
            _run_missing({cell: ([specs.get(base_method(m), m) for m in entry["methods"]], len(entry["seeds"]))},
                         scale, results, device)
        if fail_fast:
            problems = failures(_scale_records(results, scale), only(ref, cell))
            if problems:
                print(f"check: stopped at {cell}, the first failing cell (--fail-fast); {len(order) - done} "
                      f"cells not run", file=sys.stderr)
                break
    if not fail_fast:
        problems = failures(_scale_records(results, scale), ref)
    for line in problems:
        print(f"FAIL {line}")
    print(f"check: {len(problems)} problem(s) against {ref_path}" if problems
          else f"check: ok ({len(ref['cells'])} cells against {ref_path})")
    return 1 if problems else 0
