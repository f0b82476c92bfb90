"""`dfabench records check`: the record contract, checked by the package itself (no script outside the
checkout). Each breakage of a record is one violation line and exit 1; a missing folder is bad input."""
from __future__ import annotations

import json
from pathlib import Path

from dfabench.cli import main
from records import valid_record


def full_record(id="r1", method="bp", **fields) -> dict:
    return valid_record(id, **{"method": method, "hparams": {}, "history": [], "timings": {}, "provenance": {},
                               **fields})


def write(folder, records):
    (folder / "runs").mkdir(parents=True, exist_ok=True)
    for r in records:
        (folder / "runs" / f"{r['id']}.json").write_text(json.dumps(r))


def test_valid_records_pass_and_are_summarised_per_cell(tmp_path, capsys):
    write(tmp_path, [full_record("a"), full_record("b", seed=1, metrics={"test": {"acc": 0.7}}),
                     full_record("c", method="dfa")])
    (tmp_path / "verification.json").write_text(json.dumps({"checked": 1}))  # not a record: skipped
    assert main(["records", "check", str(tmp_path), "--need-methods", "bp,dfa"]) == 0
    assert capsys.readouterr().out.strip() == "3 records, 1 cells: d/s/m[bp=0.6 dfa=0.5]"


def test_each_breakage_is_a_named_violation(tmp_path, capsys):
    lacking = full_record("lacks")
    del lacking["provenance"], lacking["history"]
    no_metric = full_record("nometric", metrics={"test": {}})
    write(tmp_path, [lacking, no_metric, full_record("failed", method="dfa", status="error", metrics={})])
    (tmp_path / "runs" / "torn.json").write_text('{"id": "torn", "domain"')
    assert main(["records", "check", str(tmp_path), "--need-methods", "bp,dfa,shallow"]) == 1
    out = capsys.readouterr().out
    assert "lacks.json: lacks history, provenance" in out
    assert "nometric.json: " in out and "status ok but no finite test acc" in out
    assert "torn.json: unreadable" in out
    assert "d/s/m: no successful dfa run" in out and "d/s/m: no shallow run" in out
    assert "d/s/m: no bp run" in out  # both bp records broke the contract: none counts


def test_an_empty_folder_fails_and_a_missing_one_is_bad_input(tmp_path, capsys):
    assert main(["records", "check", str(tmp_path)]) == 1
    assert "no run records" in capsys.readouterr().out
    assert main(["records", "check", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dfabench: error:") and "no such folder" in err[0]


def test_domain_keeps_one_domains_records(tmp_path, capsys):
    write(tmp_path, [full_record("a"), full_record("b", domain="other", metrics={"test": {}})])
    assert main(["records", "check", str(tmp_path), "--domain", "d"]) == 0
    assert capsys.readouterr().out.startswith("1 records, 1 cells")


def test_clean_names_the_records_made_from_a_modified_tree(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DFABENCH_GIT_COMMIT", "c0ffee")  # a copy without git: no history to check commits in
    write(tmp_path, [full_record("kept", provenance={"commit": "c0ffee", "dirty": False}),
                     full_record("edited", seed=1, provenance={"commit": "c0ffee", "dirty": True})])
    assert main(["records", "check", str(tmp_path)]) == 0
    assert main(["records", "check", str(tmp_path), "--clean"]) == 1
    out = capsys.readouterr().out
    assert "edited.json: made from a modified working tree" in out and "kept.json" not in out


def test_rerun_makes_a_modified_tree_record_again_from_a_clean_checkout(tmp_path, capsys, monkeypatch):
    """The record is re-run from its own configuration: same id, same value (same machine), clean
    provenance; from a modified checkout nothing runs and nothing is touched."""
    from dfabench.harness.provenance import git_state

    results = tmp_path / "r"
    assert main(["run", "mlp/digits/mlp", "--method", "dfa", "--seeds", "1", "--scale", "smoke",
                 "--results", str(results)]) == 0
    path = next((results / "runs").glob("*.json"))
    made = json.loads(path.read_text())
    made["provenance"]["dirty"] = True
    path.write_text(json.dumps(made))
    try:
        monkeypatch.setenv("DFABENCH_GIT_COMMIT", "c0ffee")
        monkeypatch.setenv("DFABENCH_GIT_DIRTY", "1")
        git_state.cache_clear()
        assert main(["records", "rerun", str(results)]) == 2
        assert "this checkout is modified" in capsys.readouterr().err
        assert json.loads(path.read_text())["provenance"]["dirty"] is True
        assert main(["records", "rerun", str(results), "--dry-run"]) == 0
        assert capsys.readouterr().out.startswith(made["id"])
        monkeypatch.setenv("DFABENCH_GIT_DIRTY", "0")
        git_state.cache_clear()
        assert main(["records", "rerun", str(tmp_path)]) == 0  # every results folder below it
    finally:
        git_state.cache_clear()
    again = json.loads(path.read_text())
    assert again["id"] == made["id"] and again["provenance"] == {**again["provenance"], "commit": "c0ffee", "dirty": False}
    assert again["metrics"]["test"] == made["metrics"]["test"]
    assert main(["records", "check", str(results), "--clean"]) == 0


def test_clean_names_the_records_made_at_a_commit_outside_the_history(tmp_path, capsys, monkeypatch):
    """A clean record whose commit the dfabench checkout cannot reach (a rebased branch's) is named, and is
    what `records rerun` would make again; one at a commit in the history is not. Run from a shallow
    clone, whose history is cut, it names none."""
    import subprocess

    from dfabench.guards import rerun

    def git(*args, cwd=tmp_path):
        return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True).stdout

    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    monkeypatch.setattr(rerun, "dfabench_checkout", lambda: tmp_path)  # as if dfabench ran from it
    here = git("rev-parse", "HEAD").strip()
    lost = "3a91469a0237a7c824e818d93875f7f578134eeb"
    write(tmp_path / "results", [full_record("here", provenance={"commit": here, "dirty": False}),
                                 full_record("short", seed=2, provenance={"commit": here[:7], "dirty": False}),
                                 full_record("lost", seed=1, provenance={"commit": lost, "dirty": False})])
    assert main(["records", "check", str(tmp_path / "results"), "--clean"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert [line.split("/")[-1] for line in out[:-1]] == [
        "lost.json: made at commit 3a91469a0237, which is not in this checkout's history (a rebased branch's?); "
        "`dfabench records rerun` makes it again"]
    assert main(["records", "rerun", str(tmp_path / "results"), "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("lost d/s/m bp seed 1")
    git("clone", "-q", "--depth", "1", f"file://{tmp_path}", str(tmp_path / "shallow"), cwd=tmp_path.parent)
    monkeypatch.setattr(rerun, "dfabench_checkout", lambda: tmp_path / "shallow")
    assert main(["records", "check", str(tmp_path / "results"), "--clean"]) == 0
    monkeypatch.setattr(rerun, "dfabench_checkout", lambda: tmp_path / "results")  # inside, not a checkout
    assert main(["records", "check", str(tmp_path / "results"), "--clean"]) == 0


def test_every_committed_record_comes_from_a_commit_in_the_history():
    """No committed record was made from a modified tree or at a commit this checkout's history lacks:
    a commit reproduces each (`dfabench records rerun` made the others again)."""
    from dfabench.guards.records_check import check

    root = Path(__file__).resolve().parents[1] / "results"
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):  # bench/ and nerf/ hold no run records
        unreproducible = [v for v in check(folder, clean=True).violations if "records rerun" in v]
        assert unreproducible == [], unreproducible[:3]
