"""The ctr task: Criteo's file format, MovieLens's atomic files, the synthetic logs, and the models' feedback."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dfabench.errors import ConfigError
from dfabench.harness.plan import match_cells, plan
from dfabench.harness.runner import run_one
from dfabench.methods import create
from dfabench.tasks.ctr import data as logs
from dfabench.tasks.ctr.models import MODELS, fm_interaction


def write_criteo(path, rows=60, seed=0):
    """Kaggle's train.txt: label, 13 integers, 26 hex categorical values; tab-separated, gaps for missing."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(rows):
        ints = ["" if rng.random() < 0.2 else str(int(rng.integers(0, 200))) for _ in range(13)]
        cats = ["" if rng.random() < 0.1 else f"{int(rng.integers(0, 3 if j < 13 else 50)):08x}" for j in range(26)]
        lines.append("\t".join([str(int(rng.random() < 0.3)), *ints, *cats]))
    path.write_text("\n".join(lines) + "\n")
    return lines


def test_integer_buckets_follow_the_criteo_rule():
    import pandas as pd

    out = logs.bucket_integer(pd.Series(["", "0", "2", "3", "100"]))
    assert out.tolist() == ["nan", "0", "2", str(int(np.log(3) ** 2)), str(int(np.log(100) ** 2))]


def test_criteo_reader_streams_encodes_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("DFABENCH_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "train.txt"
    lines = write_criteo(source)
    encoded = logs.criteo(str(source), min_count=3, chunk_rows=7)  # many chunks: the streaming path
    assert encoded.x.shape == (60, 39) and encoded.y.tolist() == [float(line.split("\t")[0]) for line in lines]
    # a value gets an index when seen at least min_count=3 times in the whole file, else 0 (OOV)
    from collections import Counter

    c20 = encoded.fields.index("C20")
    raw = [line.split("\t")[1 + 13 + 19] or "nan" for line in lines]
    seen = Counter(raw)
    assert [(seen[v] >= 3) for v in raw] == (np.asarray(encoded.x)[:, c20] > 0).tolist()
    assert 0 < (np.asarray(encoded.x)[:, c20] == 0).sum() < 60
    assert all(np.asarray(encoded.x)[:, j].max() < d for j, d in enumerate(encoded.field_dims))
    (cache,) = (tmp_path / "cache" / "ctr").iterdir()  # under the user's cache, never beside the data
    assert (cache / "done").exists() and not list(tmp_path.glob("train.txt.*"))
    elsewhere = tmp_path / "copy" / "train.txt"  # the same content in another folder: the same cache
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(source.read_bytes())
    again = logs.criteo(str(elsewhere), min_count=3)
    assert np.array_equal(np.asarray(again.x), np.asarray(encoded.x)) and again.field_dims == encoded.field_dims
    assert len(list((tmp_path / "cache" / "ctr").iterdir())) == 1
    write_criteo(source, rows=30, seed=1)  # the file changes under the same name: re-read, not the old cache
    changed = logs.criteo(str(source), min_count=3)
    assert changed.x.shape == (30, 39) and len(list((tmp_path / "cache" / "ctr").iterdir())) == 2
    source.write_text("garbage\n")
    with pytest.raises(logs.CTRDataError, match="train.txt:1: 1 tab-separated fields"):
        logs.criteo(str(source), min_count=3)


def _malformed(lines, fault):
    fields = lines[2].split("\t")
    if fault == "39 columns":
        fields = fields[:-1]
    elif fault == "41 columns":
        fields = fields + ["deadbeef"]
    elif fault == "label 2":
        fields[0] = "2"
    elif fault == "text integer":
        fields[5] = "abc"
    lines[2] = "\t".join(fields)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("fault, message", [
    ("39 columns", "train.txt:3: 39 tab-separated fields; Criteo's lines have 40"),
    ("41 columns", "train.txt:3: 41 tab-separated fields"),
    ("label 2", "train.txt:3: label '2' is not 0 or 1"),
    ("text integer", "train.txt:3: I5 'abc' is not an integer"),
    ("empty", "train.txt: empty file"),
])
def test_a_malformed_criteo_file_is_refused_before_training(tmp_path, monkeypatch, capsys, fault, message):
    from dfabench.cli import main

    monkeypatch.setenv("DFABENCH_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "train.txt"
    lines = write_criteo(source, rows=50)
    source.write_text("" if fault == "empty" else _malformed(lines, fault))
    results = tmp_path / "results"
    code = main(["run", "ctr/criteo/deepfm", "--method", "dfa", "--scale", "smoke", "--results", str(results),
                 "--set", f"path={source}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not results.exists() and not (tmp_path / "cache" / "ctr").exists()  # nothing written


def test_a_criteo_run_is_named_by_the_files_content_not_its_path(tmp_path, monkeypatch):
    monkeypatch.setenv("DFABENCH_CACHE", str(tmp_path / "cache"))
    first, second = tmp_path / "a" / "train.txt", tmp_path / "b" / "train.txt"
    for path in (first, second):
        path.parent.mkdir()
        write_criteo(path, rows=200)

    def run_id(path):
        (run,), _ = plan(["ctr/criteo/deepfm"], ["dfa"], "smoke", [0], overrides={"path": str(path)})
        return run.id

    assert run_id(first) == run_id(second)
    write_criteo(second, rows=200, seed=1)
    assert run_id(first) != run_id(second)


def test_split_is_80_10_10_disjoint_and_fixed():
    a = logs.split(1000, seed=0)
    b = logs.split(1000, seed=0)
    assert [len(p) for p in a] == [800, 100, 100]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert len(np.unique(np.concatenate(a))) == 1000


def test_movielens_reads_recbole_atomic_files(tmp_path):
    (tmp_path / "ml-100k.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t5\t1\n1\t11\t2\t2\n2\t10\t4\t3\n")
    (tmp_path / "ml-100k.user").write_text(
        "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n1\t24\tM\tx\t1\n2\t53\tF\ty\t2\n")
    (tmp_path / "ml-100k.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "10\tA\t1995\tComedy Drama\n11\tB\t1990\tAction\n")
    encoded = logs.movielens(tmp_path)
    assert encoded.y.tolist() == [1.0, 0.0, 1.0]  # rating >= 4 is a click
    assert encoded.fields == ["user_id", "item_id", "age", "gender", "occupation", "release_year", "genre"]
    genre = encoded.fields.index("genre")
    assert encoded.x[0, genre] == encoded.x[2, genre] != encoded.x[1, genre]  # first genre: Comedy, Comedy, Action


def test_synthetic_logs_are_deterministic_with_the_base_rate():
    a, b = logs.synthetic(20_000, seed=4), logs.synthetic(20_000, seed=4)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert a.x.shape == (20_000, 39) and abs(float(a.y.mean()) - 0.25) < 0.015
    assert max(a.field_dims) > 20 * min(a.field_dims)  # power-law vocabularies of very different sizes
    rank1 = logs.synthetic(20_000, seed=4, interaction_rank=1)  # the diagnostic variant: same rows,
    assert np.array_equal(rank1.x, a.x) and not np.array_equal(rank1.y, a.y)  # other clicks
    assert abs(float(rank1.y.mean()) - 0.25) < 0.015
    assert "ctr/synthetic-rank1/dcn" not in match_cells(["ctr/*/*"])  # run only when named
    assert "ctr/synthetic-rank1/dcn" in match_cells(["ctr/synthetic-rank1/*"])


def test_synthetic_knobs_move_the_signal_between_first_order_and_interactions():
    default = logs.synthetic(20_000, seed=4, **logs.SYNTHETIC_LOGS["synthetic-interactions"])
    assert default.planted["interaction_share"] > 0.8  # the stress logs: mostly interactions
    assert default.planted["oracle_auc"] > default.planted["first_order_auc"] + 0.2
    milder = logs.synthetic(20_000, seed=4, first_order_std=0.5, first_order_every=1, interaction_scale=0.6)
    assert np.array_equal(milder.x, default.x)  # same rows, other clicks
    assert milder.planted["interaction_share"] < 0.5
    assert milder.planted["first_order_auc"] > default.planted["first_order_auc"] + 0.1
    first_only = logs.synthetic(20_000, seed=4, interaction_scale=0.0)
    assert first_only.planted["interaction_share"] == 0.0
    assert first_only.planted["oracle_auc"] == first_only.planted["first_order_auc"]


def test_the_named_synthetic_logs_share_rows_and_differ_in_where_the_signal_lies():
    """`synthetic` (calibrated on BP's margins) and the stress logs `synthetic-interactions` (the
    earlier default) are the same rows with other clicks; both run in the offline suite."""
    default = logs.synthetic(20_000, seed=4, **logs.SYNTHETIC_LOGS["synthetic"])
    stress = logs.synthetic(20_000, seed=4, **logs.SYNTHETIC_LOGS["synthetic-interactions"])
    assert np.array_equal(default.x, stress.x) and not np.array_equal(default.y, stress.y)
    assert logs.SYNTHETIC_LOGS["synthetic-interactions"] == {"first_order_std": 0.3, "first_order_every": 3,
                                                              "interaction_scale": 1.0}
    assert default.planted["first_order_auc"] > stress.planted["first_order_auc"] + 0.1
    assert default.planted["interaction_share"] < stress.planted["interaction_share"] - 0.2
    cells = match_cells(["ctr/*/*"])
    assert "ctr/synthetic/dcn" in cells and "ctr/synthetic-interactions/dcn" in cells


def test_the_fm_term_is_what_a_factorization_machine_fits_and_leaves_the_rest_as_it_was():
    plain = logs.synthetic(20_000, seed=4, interaction_scale=0.0, third_order_scale=0.0)
    with_fm = logs.synthetic(20_000, seed=4, interaction_scale=0.0, third_order_scale=0.0, fm_scale=1.0)
    assert np.array_equal(plain.x, with_fm.x) and not np.array_equal(plain.y, with_fm.y)
    assert plain.planted["interaction_share"] == 0.0
    assert 0.3 < with_fm.planted["interaction_share"] < 0.7  # unit std beside first-order std 0.3 x 13 fields
    x = np.random.default_rng(0).integers(0, 3, (50, 4))
    term = logs.fm_term(x, [3] * 4, 2, np.random.default_rng(1))
    rng = np.random.default_rng(1)  # the same draws, summed pair by pair
    u = [rng.normal(0, 1, (3, 2))[x[:, j]] for j in range(4)]
    pairs = sum((u[a] * u[b]).sum(1) for a in range(4) for b in range(a + 1, 4))
    assert np.allclose(term, (pairs - pairs.mean()) / pairs.std())


def _synthetic_id(dataset="synthetic", model="fm"):
    (run,), _ = plan([f"ctr/{dataset}/{model}"], ["bp"], "small", [0], check_data=False)
    return run.id


def test_a_synthetic_run_id_follows_its_generator_settings(monkeypatch):
    """Changed knobs are another run (an old record is not taken as already recorded); the same knobs
    the same run; data without a generator (MovieLens) keeps the id its committed records hold."""
    from dfabench.task import get_task

    before, others = _synthetic_id(), _synthetic_id("synthetic-interactions")
    original = dict(logs.SYNTHETIC_LOGS["synthetic"])
    monkeypatch.setitem(logs.SYNTHETIC_LOGS, "synthetic", {**logs.SYNTHETIC_LOGS["synthetic"], "interaction_scale": 0.123})
    assert _synthetic_id() != before
    assert _synthetic_id("synthetic-interactions") == others  # the other datasets keep their ids
    monkeypatch.setitem(logs.SYNTHETIC_LOGS, "synthetic", original)
    assert _synthetic_id() == before  # the knobs restored: the recorded run again
    task = get_task("ctr")
    assert task.generator_version("movielens") is None and task.generator_version("criteo") is None
    # the same knobs spelled out as the generator's default give the same version and run id; another value
    # of that knob gives another version
    version, default = task.generator_version("synthetic-interactions"), logs.synthetic_settings("synthetic-interactions")
    monkeypatch.setitem(logs.SYNTHETIC_LOGS, "synthetic-interactions",
                        {**logs.SYNTHETIC_LOGS["synthetic-interactions"], "fm_scale": default["fm_scale"]})
    assert task.generator_version("synthetic-interactions") == version
    assert _synthetic_id("synthetic-interactions") == others
    monkeypatch.setitem(logs.SYNTHETIC_LOGS, "synthetic-interactions",
                        {**logs.SYNTHETIC_LOGS["synthetic-interactions"], "fm_scale": default["fm_scale"] + 0.5})
    assert task.generator_version("synthetic-interactions") != version
    assert _synthetic_id("synthetic-interactions") != others


def test_a_synthetic_record_says_which_generator_made_its_logs(tmp_path):
    from dfabench.task import get_task

    (run,), _ = plan(["ctr/synthetic/lr"], ["bp"], "smoke", [0], check_data=False)
    record = run_one(run, tmp_path)
    generator = record["extras"]["generator"]
    assert record["status"] == "ok" and generator["version"] == get_task("ctr").generator_version("synthetic")
    assert generator["settings"] == logs.synthetic_settings("synthetic")


def test_movielens_ids_are_those_of_its_committed_records():
    import json
    from pathlib import Path

    from dfabench.guards.verify import planned_from

    runs = Path(__file__).resolve().parent.parent / "results" / "small" / "runs"
    records = [r for r in map(json.loads, map(Path.read_text, sorted(runs.glob("*.json")))) if r["dataset"] == "movielens"]
    assert len(records) >= 17
    for record in records[:6]:
        assert planned_from(record).id == record["id"]  # verify's own rebuild from the record
    assert _synthetic_id("movielens", "deepfm") in {r["id"] for r in records}


def test_fm_interaction_is_the_sum_over_pairs():
    e = torch.randn(2, 4, 3)
    pairs = sum((e[:, i] * e[:, j]).sum(1) for i in range(4) for j in range(i + 1, 4))
    assert torch.allclose(fm_interaction(e), pairs, atol=1e-5)


@pytest.mark.parametrize("name", ["deepfm", "dcn", "autoint", "afn", "dcnv2"])
def test_dfa_reaches_hidden_layers_with_other_gradients_than_bp(name):
    dims = [5, 7, 3, 4]
    x = torch.stack([torch.randint(0, d, (16,)) for d in dims], 1)
    y = (torch.rand(16) < 0.5).float()
    grads = {}
    for method_name in ("bp", "dfa", "shallow"):
        torch.manual_seed(0)
        model = MODELS[name](dims, dim=4, hidden=[8, 8], log_neurons=4, dropout=0.0)
        model.train()
        method = create(method_name)
        method.prepare(model, lambda: model(x), seed=0)
        method.backward(model(x), lambda out: torch.nn.functional.binary_cross_entropy_with_logits(out, y))
        grads[method_name] = {n: p.grad for n, p in model.named_parameters()}
    first_hidden = next(n for n in grads["bp"] if n.startswith("mlp.0.weight"))
    assert torch.count_nonzero(grads["dfa"][first_hidden]) > 0
    assert not torch.allclose(grads["dfa"][first_hidden], grads["bp"][first_hidden])
    assert grads["shallow"][first_hidden] is None or torch.count_nonzero(grads["shallow"][first_hidden]) == 0
    if name == "deepfm":  # the MLP's input is cut under DFA: the embeddings learn through FM only
        assert not torch.allclose(grads["dfa"]["embed.embedding.weight"], grads["bp"]["embed.embedding.weight"])


def test_bp_only_models_and_official_data_are_explained(tmp_path):
    runs, notes = plan(["ctr/movielens/lr", "ctr/movielens/fm"], ["bp", "dfa"], "smoke", [0])
    assert [r.method for r in runs] == ["bp", "bp"]
    assert any("fm has no hidden layer" in n for n in notes)
    assert not any("criteo" in c for c in match_cells(["ctr/*/*"]))
    with pytest.raises(ConfigError, match="set path"):  # refused by the pre-flight check, before training
        plan(["ctr/criteo/deepfm"], ["bp"], "smoke", [0])
    criteo_runs, _ = plan(["ctr/criteo/deepfm"], ["bp"], "smoke", [0], check_data=False)
    record = run_one(criteo_runs[0], tmp_path)  # had it got past the check, the run records the error
    assert record["status"] == "error" and "set path" in record["error"]


def test_smoke_run_on_a_written_criteo_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DFABENCH_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "train.txt"
    write_criteo(source, rows=400)
    runs, _ = plan(["ctr/criteo/deepfm"], ["dfa"], "smoke", [0], overrides={"path": str(source), "min_count": 2})
    record = run_one(runs[0], tmp_path / "results")
    assert record["status"] == "ok" and 0.0 <= record["metrics"]["test"]["auc"] <= 1.0
    assert record["timings"]["item_unit"] == "samples" and 0 <= record["extras"]["batching_share"] < 1
    rows = record["timings"]["steps"] * record["hparams"]["batch_size"]  # every smoke batch is full or the tail
    assert 0 < record["timings"]["train_items_per_s"] <= rows / record["timings"]["train_s"]


@pytest.mark.parametrize("name", ["dcn", "autoint"])
def test_dfa_moves_every_embedding_of_a_field_along_one_direction(name):
    """Why DFA trails BP on the synthetic logs (tasks/ctr/README.md): with one click logit the error
    is a scalar per row, and a feedback point right on the embeddings gives every value of field f
    the gradient (sum of its rows' errors) * B_f: one fixed direction per field, so DFA can learn a
    scalar per value but not the value vectors whose dot products make the planted interactions."""
    dims = [6, 9, 5]
    x = torch.stack([torch.arange(16) % d for d in dims], 1)  # every value of every field occurs
    y = (torch.rand(16, generator=torch.Generator().manual_seed(3)) < 0.5).float()

    def embedding_grad(method_name):
        torch.manual_seed(0)
        model = MODELS[name](dims, dim=4, hidden=[8, 8], dropout=0.0)
        method = create(method_name)
        method.prepare(model, lambda: model(x), seed=0)
        method.backward(model(x), lambda out: torch.nn.functional.binary_cross_entropy_with_logits(out, y))
        return model.embed.embedding.weight.grad

    for method_name, rank_one in (("dfa", True), ("bp", False)):
        grad, start = embedding_grad(method_name), 0
        for d in dims:
            singular = torch.linalg.svdvals(grad[start:start + d].double())
            start += d
            assert singular[0] > 0
            assert (singular[1] / singular[0] < 1e-6) == rank_one, (method_name, singular)
