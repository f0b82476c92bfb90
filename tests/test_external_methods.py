"""Methods from outside the package: a file, a module or an entry point runs like a built-in method,
its records say where its code came from, and two versions of it never share a name."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from dfabench.catalog import METHOD_REQUIREMENTS
from dfabench.cli import main
from dfabench.engine.feedback import FEEDBACK_PREFIX
from dfabench.errors import ConfigError
from dfabench.harness.schema import problem
from dfabench.methods import METHODS, create
from dfabench.methods.registry import resolve
from tiny_nets import batch, double_precision, tiny_mlp  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "my_method"
EXAMPLE_FILE = EXAMPLE / "my_method.py"


def example_key(path: Path = EXAMPLE_FILE) -> str:
    return f"ternary-dfa@{hashlib.sha256(path.read_bytes()).hexdigest()[:8]}"


@pytest.fixture
def registries():
    """Outside methods register themselves in this process: undo it for the other test modules."""
    methods, requirements = dict(METHODS), dict(METHOD_REQUIREMENTS)
    yield
    for table, before in ((METHODS, methods), (METHOD_REQUIREMENTS, requirements)):
        table.clear()
        table.update(before)


def dfabench(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """The command as a user types it, in a fresh interpreter (the example is imported there)."""
    command = [sys.executable, "-c", "import sys; from dfabench.cli import main; sys.exit(main(sys.argv[1:]))", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", **(env or {})})


def records_of(results: Path) -> dict[str, dict]:
    return {r["method"]: r for r in (json.loads(p.read_text()) for p in (results / "runs").glob("*.json"))}


def test_a_file_method_runs_beside_bp_and_dfa_from_a_folder_outside_the_repository(tmp_path):
    spec = f"{EXAMPLE_FILE}:MyMethod"
    done = dfabench("run", "mlp/digits/*", "--method", f"bp,dfa,{spec}", "--scale", "smoke", "--results", "res",
                    cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    by_method = records_of(tmp_path / "res")
    key = example_key()
    assert set(by_method) == {"bp", "dfa", key}
    ours = by_method[key]
    assert ours["status"] == "ok" and problem(ours) is None
    assert ours["method_origin"] == {
        "kind": "file", "spec": "my_method.py:MyMethod", "file": "my_method.py", "class": "MyMethod",
        "sha256": hashlib.sha256(EXAMPLE_FILE.read_bytes()).hexdigest()}  # outside the folder: its name only
    assert "method_origin" not in by_method["bp"]
    # it trained differently from BP and from DFA (same seed, data and model; only the method differs)
    losses = {m: [h["train_loss"] for h in r["history"]] for m, r in by_method.items()}
    assert losses[key] != losses["bp"] and losses[key] != losses["dfa"]
    checked = dfabench("records", "check", "res", "--need-methods", f"bp,dfa,{key}", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout
    assert "mlp/digits/mlp[" in checked.stdout and f"{key}=" in checked.stdout

    listed = dfabench("list", "--method", spec, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert f"# method {key}: DFA with a ternary error" in listed.stdout and "requires=nothing" in listed.stdout
    mlp_line = next(line for line in listed.stdout.splitlines() if line.startswith("mlp/digits/mlp "))
    assert f",{key}" in mlp_line


@pytest.mark.usefixtures("double_precision")
def test_the_example_sends_its_ternary_error_through_dfa(batch, registries):
    """Hand computation on the tiny net: the hidden layers get (B t) * f'(a) h^T with t the centred
    ternary error scaled by each row's largest |e|; the output layer its true gradient."""
    x, y = batch
    key, _, _ = resolve(f"{EXAMPLE_FILE}:MyMethod")
    model, bp_model = tiny_mlp(), tiny_mlp()
    method = create(key)
    method.prepare(model, lambda: model(x), seed=0)
    params = list(model.parameters())
    _, got = method.gradients(model(x), lambda out: ((out - y) ** 2).mean(), params)
    bp = create("bp")
    bp.prepare(bp_model, lambda: bp_model(x), seed=0)
    _, want_bp = bp.gradients(bp_model(x), lambda out: ((out - y) ** 2).mean(), list(bp_model.parameters()))

    B = getattr(model, f"{FEEDBACK_PREFIX}default")
    W1, b1, W2, b2, W3, b3 = [p.detach() for p in params]
    h1 = torch.tanh(x @ W1.T + b1)
    h2 = torch.tanh(h1 @ W2.T + b2)
    out = h2 @ W3.T + b3
    e = 2 * (out - y) / out.numel()
    peak = e.abs().amax(1, keepdim=True)
    t = torch.sign(e) * (e.abs() >= 0.5 * peak)
    t = (t - t.mean(1, keepdim=True)) * peak
    d1 = (t @ B[:, :4]) * (1 - h1 ** 2)
    d2 = (t @ B[:, :3]) * (1 - h2 ** 2)
    for g, w in zip(got, [d1.T @ x, d1.sum(0), d2.T @ h1, d2.sum(0), e.T @ h2, e.sum(0)]):
        torch.testing.assert_close(g, w)
    torch.testing.assert_close(got[4], want_bp[4])  # the output layer: BP's gradient
    for i in range(4):
        assert not torch.allclose(got[i], want_bp[i])  # the hidden layers: not BP's
    assert not torch.allclose(t, e)  # and not DFA's signal either


def test_an_edited_file_is_another_method_and_a_worker_refuses_the_changed_code(tmp_path, registries):
    copy = tmp_path / "mine.py"
    shutil.copy(EXAMPLE_FILE, copy)
    first, spec, origin = resolve(f"{copy}:MyMethod")
    assert first == example_key(copy) and origin["sha256"] == hashlib.sha256(copy.read_bytes()).hexdigest()
    copy.write_text(copy.read_text() + "\n# a later version\n")
    second, _, _ = resolve(f"{copy}:MyMethod")
    assert second != first and second.split("@")[0] == first.split("@")[0] == "ternary-dfa"
    assert METHODS[first] is not METHODS[second]  # both versions loaded side by side, each under its key
    # a worker that did not plan the run loads it from the spec, and the hash must still be the planned one
    METHODS.pop(first)
    with pytest.raises(ConfigError, match="changed since the run was planned"):
        create(first, spec=spec)


def test_a_planned_run_carries_the_spec_string_to_a_fresh_process(tmp_path, registries):
    """What the Ray executor ships to a worker: a pickled PlannedRun with a spec, not a class."""
    from dfabench.harness.plan import plan

    runs, _ = plan(["mlp/digits/mlp"], [f"{EXAMPLE_FILE}:MyMethod"], "smoke", [0], check_data=False)
    (run,) = runs
    assert run.method == example_key() and run.method_spec == f"{EXAMPLE_FILE.resolve()}:MyMethod"
    shipped = tmp_path / "run.pkl"
    shipped.write_bytes(pickle.dumps(run))
    code = ("import pickle, sys; from dfabench.methods import create; run = pickle.load(open(sys.argv[1], 'rb')); "
            "m = create(run.method, run.hparams.method_options, spec=run.method_spec); print(type(m).__name__, m.name)")
    out = subprocess.run([sys.executable, "-c", code, str(shipped)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["MyMethod", "ternary-dfa"]


BAD = {
    "missing.py:MyMethod": "no such file missing.py",
    "my_method.py:Nope": "my_method.py has no attribute 'Nope'",
    "plain.py:Plain": "Plain is not a subclass of dfabench.methods.Method",
    "plain.py:NUMBER": "NUMBER is not a subclass of dfabench.methods.Method",
    "broken.py:Anything": "importing broken.py failed: ModuleNotFoundError: No module named 'no_such_module_here'",
    "no_such_package.methods:X": "importing module 'no_such_package.methods' failed",
    "json:JSONDecoder": "JSONDecoder is not a subclass",
    "not-a-method-name": "unknown method 'not-a-method-name'",
}


@pytest.mark.parametrize("spec", sorted(BAD))
def test_a_bad_method_spec_is_one_line_exit_2_and_nothing_written(tmp_path, monkeypatch, capsys, registries, spec):
    shutil.copy(EXAMPLE_FILE, tmp_path / "my_method.py")
    (tmp_path / "plain.py").write_text("class Plain:\n    pass\n\nNUMBER = 3\n")
    (tmp_path / "broken.py").write_text("import no_such_module_here\n")
    monkeypatch.chdir(tmp_path)
    code = main(["run", "mlp/digits/mlp", "--method", f"bp,{spec}", "--scale", "smoke", "--results", "res"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert BAD[spec] in err[0]
    assert not (tmp_path / "res").exists()
    assert main(["list", "--method", spec]) == 2  # `list` refuses it the same way
    assert BAD[spec] in capsys.readouterr().err


def test_an_installed_package_is_found_by_its_entry_point(tmp_path):
    """The example's pyproject declares the entry point; installed (here: its metadata and module on
    PYTHONPATH, as pip lays them out), `--method ternary-dfa` finds it and the record names the package."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    site = tmp_path / "site"
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    points = project["entry-points"]["dfabench.methods"]
    (info / "entry_points.txt").write_text("[dfabench.methods]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()))
    shutil.copy(EXAMPLE_FILE, site / "my_method.py")
    work = tmp_path / "work"
    work.mkdir()
    env = {"PYTHONPATH": str(site)}
    listed = dfabench("list", cwd=work, env=env)
    key = example_key()
    assert listed.returncode == 0, listed.stderr
    assert f"# method {key}: " in listed.stdout and f"from={project['name']} 0.1.0" in listed.stdout
    done = dfabench("run", "mlp/digits/mlp", "--method", "ternary-dfa", "--scale", "smoke", "--results", "res",
                    cwd=work, env=env)
    assert done.returncode == 0, done.stderr
    origin = records_of(work / "res")[key]["method_origin"]
    assert origin["kind"] == "entry_point" and origin["entry_point"] == "ternary-dfa"
    assert (origin["package"], origin["version"], origin["module"]) == (project["name"], "0.1.0", "my_method")
