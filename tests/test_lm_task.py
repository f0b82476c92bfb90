"""The lm task: feedback points where the paper puts them, and DFA differs from BP on the model."""
import torch

from dfabench.engine.points import FeedbackOutput, FeedbackPoint
from dfabench.methods import create
from dfabench.tasks.lm.models import TransformerLM


def _model():
    torch.manual_seed(0)
    return TransformerLM(50, 8, 2, 16, 2, 32, 0.0)


def test_points_macro_and_micro():
    model = _model()
    tags = [m.tag for m in model.modules() if isinstance(m, FeedbackPoint)]
    assert tags.count("default") == 2 and tags.count("micro") == 4
    outputs = [m for m in model.modules() if isinstance(m, FeedbackOutput)]
    assert len(outputs) == 1 and outputs[0].batch_dims == 2
    assert model(torch.randint(0, 50, (3, 8))).shape == (3, 8, 50)


def _grads(method_name, options):
    model = _model()
    x, y = torch.randint(0, 50, (4, 8)), torch.randint(0, 50, (4, 8))
    method = create(method_name, options)
    method.prepare(model, lambda: model(x), 0)
    out = model(x)
    method.backward(out, lambda o: torch.nn.functional.cross_entropy(o.flatten(0, 1), y.flatten()))
    return model.lm.transformer.h[0].mlp.c_fc.weight.grad.clone()


def test_dfa_hidden_gradients_nonzero_and_differ_from_bp():
    bp = _grads("bp", {})
    for options in ({}, {"tags": ["default", "micro"]}):
        dfa = _grads("dfa", options)
        assert dfa.abs().sum() > 0
        assert not torch.allclose(dfa, bp, atol=1e-6)


# --- data, tokeniser, metric, harness --------------------------------------------------------------
import math  # noqa: E402

import pytest  # noqa: E402

from dfabench.harness.plan import plan  # noqa: E402
from dfabench.harness.runner import run_one  # noqa: E402
from dfabench.tasks.lm import data as lm_data  # noqa: E402
from dfabench.tasks.lm.task import LMHParams, LMTask, TokenData  # noqa: E402

WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex every jolly box".split()


def write_wikitext(folder, lines_per_split=(120, 20, 20)):
    """Tiny files in the WikiText raw format: ' = Heading = ' lines, paragraphs, blank lines between."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in zip(("wiki.train.raw", "wiki.valid.raw", "wiki.test.raw"), lines_per_split):
        body = [" = Title = ", ""]
        body += [" " + " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(12)) + " . " for i in range(n)]
        (folder / name).write_text("\n".join(body + [""]) + "\n", encoding="utf-8")
    return folder


def test_wikitext_loader_reads_raw_files_in_both_layouts(tmp_path):
    flat = lm_data.wikitext_splits(write_wikitext(tmp_path / "flat"))
    nested = lm_data.wikitext_splits(write_wikitext(tmp_path / "hub" / "wikitext-2-raw-v1"))
    assert flat == nested
    assert [len(flat[k]) for k in ("train", "val", "test")] == [121, 21, 21]  # heading + paragraphs, no blanks
    assert flat["train"][0] == "= Title =" and all(line for line in flat["train"])
    with pytest.raises(FileNotFoundError):
        lm_data.wikitext_splits(tmp_path / "nothing")


def test_tokenizer_is_cached_and_keyed_by_corpus_and_vocab(tmp_path, monkeypatch):
    monkeypatch.setattr(lm_data, "CACHE", tmp_path)
    lines = lm_data.wikitext_splits(write_wikitext(tmp_path / "w"))["train"]
    first = lm_data.bpe_tokenizer(lines, 300)
    files = sorted(tmp_path.glob("bpe-*.json"))
    assert len(files) == 1
    again = lm_data.bpe_tokenizer(lines, 300)  # loaded from the file, same encoding
    assert again.encode(lines[1]).ids == first.encode(lines[1]).ids and len(list(tmp_path.glob("bpe-*.json"))) == 1
    lm_data.bpe_tokenizer(lines, 280)
    lm_data.bpe_tokenizer(lines[:50], 300)
    assert len(list(tmp_path.glob("bpe-*.json"))) == 3  # other vocab size, other corpus: other files


def test_perplexity_is_exp_of_mean_token_nll_over_the_full_pass():
    torch.manual_seed(0)
    model = TransformerLM(40, 8, 1, 16, 2, 32, 0.0).eval()
    ids = torch.randint(0, 40, (8 * 5 + 3,))  # 5 windows of 8 and a ragged tail that is not scored
    data = TokenData(ids, ids, ids, 40, "toy")
    hp = LMHParams(batch_size=2, context=8)  # 3 batches: 2 + 2 + 1 windows
    with torch.no_grad():
        got = LMTask().evaluate(model, data, "test", hp)
        nll = []
        for w in range(5):
            x, y = ids[w * 8:(w + 1) * 8], ids[w * 8 + 1:(w + 1) * 8 + 1]
            logp = torch.log_softmax(model(x[None])[0], dim=-1)
            nll += [-float(logp[t, y[t]]) for t in range(8)]
    mean = sum(nll) / len(nll)
    assert got["loss"] == pytest.approx(mean, rel=1e-5)
    assert got["perplexity"] == pytest.approx(math.exp(mean), rel=1e-5)


def test_smoke_run_through_the_harness_on_local_wikitext(tmp_path, monkeypatch):
    monkeypatch.setattr(lm_data, "CACHE", tmp_path / "cache")
    folder = write_wikitext(tmp_path / "wikitext-2-raw-v1", (300, 40, 40))
    runs, _ = plan(["lm/wikitext-2/gpt"], ["dfa-micro"], "smoke", [0], overrides={"data_dir": str(folder)})
    record = run_one(runs[0], tmp_path / "results")
    assert record["status"] == "ok", record.get("error")
    test = record["metrics"]["test"]
    assert 1.0 < test["perplexity"] < 400 and test["perplexity"] == pytest.approx(math.exp(test["loss"]), rel=1e-6)
    # training throughput counts target tokens of the optimiser steps only
    hp, timings = record["hparams"], record["timings"]
    tokens = timings["steps"] * hp["batch_size"] * hp["context"]
    assert timings["item_unit"] == "tokens"
    assert timings["train_items_per_s"] == pytest.approx(tokens / timings["train_s"], rel=1e-9)


def test_paper_optimiser_settings_are_named_presets():
    from dfabench.hparams import ConfigError, resolve
    from dfabench.task import all_tasks

    task = all_tasks()["lm"]
    cell = dict(dataset="wiki-gensim", model="gpt")
    bp = resolve(task, scale="paper", method="bp", **cell)
    assert (bp.schedule, bp.lr, bp.betas, bp.warmup_steps) == ("noam", 7.0e-4, (0.9, 0.98), 4000)
    for dfa in ("dfa", "dfa-micro"):
        hp = resolve(task, scale="paper", method=dfa, **cell)
        assert (hp.schedule, hp.lr, hp.betas, hp.gamma, hp.plateau_patience) == ("plateau", 1e-4, (0.9, 0.999), 0.2, 1)
    # the user's preset wins over the rules' choice, and the user's own keys win over the preset
    hp = resolve(task, scale="paper", method="dfa", overrides={"preset": "adam-5e-5-0.98", "epochs": 3}, **cell)
    assert (hp.schedule, hp.lr, hp.betas, hp.epochs) == ("none", 5e-5, (0.9, 0.98), 3)
    hp = resolve(task, scale="small", method="bp", overrides={"preset": "noam-0.999", "lr": 1e-3}, **cell)
    assert (hp.schedule, hp.lr, hp.betas, hp.context) == ("noam", 1e-3, (0.9, 0.999), 64)  # small's model kept
    with pytest.raises(ConfigError, match="unknown preset 'adam-9' .*adam-1e-4-plateau"):
        resolve(task, scale="small", method="bp", overrides={"preset": "adam-9"}, **cell)


def test_gensim_wiki_split_by_article_is_deterministic_and_disjoint():
    import importlib.util

    if importlib.util.find_spec("gensim") is None:
        pytest.skip("gensim wheel absent")
    articles = lm_data.gensim_wiki_articles()
    assert len(articles) > 50 and len({t for t, _ in articles}) == len(articles)
    text = " ".join(" ".join(lines) for _, lines in articles)
    # markup stripped (compared as a list: a failing `in` on megabytes of text makes pytest's diff hang)
    assert [marker for marker in ("{{", "[[", "<ref") if marker in text] == []
    splits = lm_data.split_articles(articles)
    assert lm_data.split_articles(lm_data.gensim_wiki_articles()) == splits  # deterministic
    # every article lands whole in exactly one split, whatever the order of the others
    home = {}
    for title, lines in articles:
        alone = lm_data.split_articles([(title, lines)])
        (home[title],) = [k for k, v in alone.items() if v]
        assert alone[home[title]] == lines
    assert set(home.values()) == {"train", "val", "test"}
    for name in ("train", "val", "test"):
        expected = [line for title, lines in articles if home[title] == name for line in lines]
        assert splits[name] == expected
    reordered = lm_data.split_articles(list(reversed(articles)))
    assert all(sorted(reordered[k]) == sorted(splits[k]) for k in splits)
