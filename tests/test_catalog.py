"""The light registry: specs agree with the task classes, and the CLI's catalogue commands import no
heavy library (how fast they are is measured by benchmarks/cli_start.py, not here)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dfabench.catalog import METHOD_REQUIREMENTS, load_class, specs
from dfabench.methods import METHODS
from dfabench.task import get_task

CATALOGUE = ("datasets", "models", "metrics", "primary_metric", "table_metrics", "explicit_datasets",
             "explicit_models", "bp_only_models", "point_tags", "capabilities")
HEAVY = ("torch", "torch_geometric", "transformers", "pandas", "scipy", "pydantic")


def test_method_index_matches_the_registered_methods_in_order():
    assert list(METHOD_REQUIREMENTS) == list(METHODS)
    assert METHOD_REQUIREMENTS == {name: cls.requires_tags for name, cls in METHODS.items()}


@pytest.mark.parametrize("domain", sorted(specs()))
def test_spec_agrees_with_its_task_class(domain):
    spec = specs()[domain]
    task = get_task(domain)
    assert type(task) is load_class(spec.entry_point) and task.domain == domain
    # Every class reads its catalogue from its spec: a class attribute that shadows it must agree.
    for name in CATALOGUE:
        assert getattr(task, name) == getattr(spec, name), name
    assert set(spec.cells()) <= {(d, m) for d in spec.datasets for m in spec.models}
    assert set(spec.data) <= set(spec.datasets)
    for dataset, model in spec.cells():
        assert spec.primary_for(model) in {m.name for m in spec.metrics}
        for method in METHODS:
            assert task.method_applies(model, method) == spec.method_applies(model, method)


def _modules_after(code: str) -> set[str]:
    """Top-level modules imported by a fresh interpreter running ``code``."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_help_and_list_import_no_heavy_library():
    for code in ("from dfabench.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
                 "from dfabench.cli import main\nmain(['list'])"):
        assert not _modules_after(code) & set(HEAVY), code


def test_planning_an_mlp_cell_imports_no_other_domain():
    loaded = _modules_after("from dfabench.harness.plan import plan\nplan(['mlp/digits/mlp'], ['bp'], 'smoke', [0])")
    assert "torch" in loaded  # the mlp task itself is imported, to resolve its hyper-parameters
    assert not loaded & {"torch_geometric", "transformers", "tokenizers"}


def test_probe_models_run_only_when_named():
    from dfabench.harness.plan import match_cells

    probes = {"mlp": {"mlp-depth4", "mlp-depth8", "mlp-depth16", "mlp-out1", "mlp-out2", "mlp-out10", "mlp-out100"},
              "lm": {"transformer-noln", "transformer-logits", "transformer-preln", "transformer-preln-logits"},
              "nerf": {"nerf-authors-feature"}}
    for domain, models in probes.items():
        assert specs()[domain].explicit_models == models
        assert not {c.split("/")[2] for c in match_cells([f"{domain}/*/*"])} & models  # the suites stay as they were
    assert len(match_cells(["mlp/*/*"])) == 17  # the survey's: 3 baselines and 14 ablations
    assert match_cells(["mlp/fashion-mnist/mlp-depth4", "lm/kjv/transformer-noln"]) == [
        "mlp/fashion-mnist/mlp-depth4", "lm/kjv/transformer-noln"]


NEW_METHOD = '''"""DFA with the feedback scaled by one half: a method added as one file, nothing else touched."""
from .dfa import DFA
from .registry import register


@register
class HalfDFA(DFA):
    name = "half-dfa"
    summary = "DFA whose projected error is halved"

    def _feedback_error(self, record, error):
        return 0.5 * error
'''


def test_a_new_method_is_one_file(tmp_path):
    """Copy the package, add one module to dfabench/methods/ and nothing else: `list` shows the method
    (without importing torch) and `run` trains with it."""
    import dfabench

    root = Path(dfabench.__file__).resolve().parent.parent
    copy = tmp_path / "dfabench"
    shutil.copytree(root / "dfabench", copy, ignore=shutil.ignore_patterns("__pycache__"))
    for folder in ("tasks", "leaderboard"):  # what setup.py maps under the dfabench namespace
        shutil.copytree(root / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "methods" / "half_dfa.py").write_text(NEW_METHOD)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "TQDM_DISABLE": "1"}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "dfabench.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True)

    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    assert "half-dfa" in next(line for line in listed.stdout.splitlines() if line.startswith("mlp/digits/mlp "))
    run = cli("run", "mlp/digits/mlp", "--method", "half-dfa,dfa", "--scale", "smoke", "--results", "out")
    assert run.returncode == 0, run.stderr
    records = {r["method"]: r for r in map(json.loads, map(Path.read_text, (tmp_path / "out" / "runs").glob("*.json")))}
    assert set(records) == {"half-dfa", "dfa"} and records["half-dfa"]["status"] == "ok"
    assert records["half-dfa"]["metrics"] != records["dfa"]["metrics"]  # the halved signal trained otherwise
