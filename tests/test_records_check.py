"""`dfabench records check`: the record contract, checked by the package itself (no script outside the
checkout). Each breakage of a record is one violation line and exit 1; a missing folder is bad input."""
from __future__ import annotations

import json

from dfabench.cli import main
from records import valid_record


def full_record(id="r1", method="bp", **fields) -> dict:
    return valid_record(id, method=method, hparams={}, history=[], timings={}, provenance={}, **fields)


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
