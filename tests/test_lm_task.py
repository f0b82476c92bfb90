"""The lm task: feedback points where the paper puts them, and DFA differs from BP on the model."""
import pytest
import torch

from dfabench.engine.points import FeedbackOutput, FeedbackPoint
from dfabench.methods import create
from dfabench.tasks.lm.models import PaperTransformer, PreLNGPT2, stream_statistics


def _model(kind="transformer", error_at="decoder_input"):
    torch.manual_seed(0)
    if kind == "transformer":
        return PaperTransformer(50, 8, 2, 16, 2, 32, 0.0, error_at=error_at)
    return PreLNGPT2(50, 8, 2, 16, 2, 32, 0.0)


@pytest.mark.parametrize("kind", ["transformer", "gpt2-preln"])
def test_points_macro_and_micro(kind):
    model = _model(kind)
    tags = [m.tag for m in model.modules() if isinstance(m, FeedbackPoint)]
    assert tags.count("default") == 2 and tags.count("micro") == 4
    outputs = [m for m in model.modules() if isinstance(m, FeedbackOutput)]
    assert len(outputs) == 1 and outputs[0].batch_dims == 2
    assert model(torch.randint(0, 50, (3, 8))).shape == (3, 8, 50)


def test_paper_transformer_is_post_ln_with_the_papers_embedding_and_init():
    model = _model()
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in [model.decoder])  # no final LayerNorm
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm)]
    assert names == ["blocks.0.norm1", "blocks.0.norm2", "blocks.1.norm1", "blocks.1.norm2"]
    assert model.embedding.weight.abs().max() <= 0.1 and model.decoder.weight.abs().max() <= 0.1
    assert model.decoder.bias.abs().max() == 0 and model.decoder.weight.data_ptr() != model.embedding.weight.data_ptr()
    assert "positions" not in dict(model.named_parameters())  # fixed sinusoids, not trained
    # the block output is LayerNorm'd: every token has unit-variance features
    seen = []
    model.decoder.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    model.eval()(torch.randint(0, 50, (2, 8)))
    assert torch.allclose(seen[0].var(dim=-1, unbiased=False), torch.ones(2, 8), atol=1e-3)
    # causal: a later token does not change an earlier position's logits
    x = torch.randint(0, 50, (1, 8))
    y = x.clone()
    y[0, -1] = (x[0, -1] + 1) % 50
    assert torch.allclose(model(x)[0, :-1], model(y)[0, :-1], atol=1e-6)


def _step(model, method_name, options, x, y):
    method = create(method_name, options)
    method.prepare(model, lambda: model(x), 0)
    model.zero_grad(set_to_none=True)
    out = model(x)
    method.backward(out, lambda o: torch.nn.functional.cross_entropy(o.flatten(0, 1), y.flatten()))
    return method


def _grads(method_name, options, kind="transformer"):
    model = _model(kind)
    x, y = torch.randint(0, 50, (4, 8)), torch.randint(0, 50, (4, 8))
    _step(model, method_name, options, x, y)
    layer = model.blocks[0].linear1 if kind == "transformer" else model.lm.transformer.h[0].mlp.c_fc
    return layer.weight.grad.clone()


@pytest.mark.parametrize("kind", ["transformer", "gpt2-preln"])
def test_dfa_hidden_gradients_nonzero_and_differ_from_bp(kind):
    bp = _grads("bp", {}, kind)
    for options in ({}, {"tags": ["default", "micro"]}):
        dfa = _grads("dfa", options, kind)
        assert dfa.abs().sum() > 0
        assert not torch.allclose(dfa, bp, atol=1e-6)


def test_dfa_takes_the_error_at_the_decoder_input_and_the_decoder_learns_its_true_gradient():
    x, y = torch.randint(0, 50, (4, 8)), torch.randint(0, 50, (4, 8))
    for error_at, width in (("decoder_input", 16), ("logits", 50)):
        model = _model(error_at=error_at)
        method = _step(model, "dfa", {}, x, y)
        (B,) = [b for n, b in model.named_buffers() if "feedback" in n]
        assert B.shape == (width, 16)  # output features x largest (macro) point
        decoder_dfa = model.decoder.weight.grad.clone()
        bp_model = _model(error_at=error_at)
        _step(bp_model, "bp", {}, x, y)
        # the decoder sits above the last point: DFA gives it exactly BP's gradient
        assert torch.allclose(decoder_dfa, bp_model.decoder.weight.grad, atol=1e-6)
        method.keep_signals = True  # a training step keeps no signals unless asked (alignment asks)
        model.zero_grad(set_to_none=True)
        method.backward(model(x), lambda o: torch.nn.functional.cross_entropy(o.flatten(0, 1), y.flatten()))
        assert method.last_signals and all(s.shape[-1] == 16 for _, s in method.last_signals)
    micro = _model()
    _step(micro, "dfa", {"tags": ["default", "micro"]}, x, y)
    (B,) = [b for n, b in micro.named_buffers() if "feedback" in n]
    assert B.shape == (16, 32)  # the FFN hidden point is the widest


def test_shallow_trains_exactly_the_layers_above_the_last_point_with_the_error_at_the_decoder_input():
    x, y = torch.randint(0, 50, (4, 8)), torch.randint(0, 50, (4, 8))
    for error_at in ("decoder_input", "logits"):
        model = _model(error_at=error_at)
        _step(model, "shallow", {}, x, y)
        trained = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        assert trained == {"decoder.weight", "decoder.bias"}, error_at
        bp_model = _model(error_at=error_at)
        _step(bp_model, "bp", {}, x, y)
        assert torch.allclose(model.decoder.weight.grad, bp_model.decoder.weight.grad, atol=1e-6)


def _collapse_run(kind, method_name, steps=100):
    """A tiny LM trained as the small scale trains (Adam 5e-4, beta2 0.98, eps 1e-9, clip 0.5) on a
    token stream with a Zipf marginal and a next-token rule; the stream statistics before and after,
    the model's loss and the unigram loss on that stream."""
    torch.manual_seed(0)
    vocab, context, rows = 64, 16, 256
    model = (PaperTransformer(vocab, context, 2, 32, 2, 64, 0.0) if kind == "transformer"
             else PaperTransformer(vocab, context, 2, 32, 2, 64, 0.0, norm="pre") if kind == "transformer-preln"
             else PreLNGPT2(vocab, context, 2, 32, 2, 64, 0.0))
    generator = torch.Generator().manual_seed(0)
    follow_rule, zipf = torch.randperm(vocab, generator=generator), torch.arange(1, vocab + 1.0).pow(-1.2)
    ids = torch.empty(rows, context + 1, dtype=torch.long)
    ids[:, 0] = torch.multinomial(zipf, rows, replacement=True, generator=generator)
    for t in range(1, context + 1):  # half the time the rule's successor, else a Zipf draw
        follow = torch.rand(rows, generator=generator) < 0.5
        ids[:, t] = torch.where(follow, follow_rule[ids[:, t - 1]],
                                torch.multinomial(zipf, rows, replacement=True, generator=generator))
    x, y = ids[:, :-1], ids[:, 1:]
    before = stream_statistics(model, x, at="residual")
    method = create(method_name, {})
    method.prepare(model, lambda: model(x[:16]), 0)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4, betas=(0.9, 0.98), eps=1e-9)
    for step in range(steps):
        batch = slice((step * 16) % rows, (step * 16) % rows + 16)
        optimizer.zero_grad(set_to_none=True)
        out = model(x[batch])
        method.backward(out, lambda o: torch.nn.functional.cross_entropy(o.flatten(0, 1), y[batch].flatten()))
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        optimizer.step()
    counts = torch.bincount(y.flatten(), minlength=vocab).double() + 1
    unigram = float(-(counts / counts.sum()).log()[y.flatten()].mean())
    with torch.no_grad():
        loss = float(torch.nn.functional.cross_entropy(model.eval()(x).flatten(0, 1), y.flatten()))
    return before, stream_statistics(model, x, at="residual"), loss, unigram


def test_dfa_collapses_the_pre_ln_stream_and_not_the_post_ln_one():
    """The pre-LN finding: DFA feeds the raw residual stream below GPT-2's final LayerNorm; a component
    shared by every token grows until it dwarfs the spread between tokens, ln_f hands the head an
    almost constant vector, and the loss sits on the unigram floor. Both models' streams are read at the
    same place, the last residual sum before any normalisation (post-LN's before its norm2), so the
    post-LN bound below is one a pre-LN stream fails, not one a LayerNorm's output meets by construction."""
    before, after, loss, unigram = _collapse_run("gpt2-preln", "dfa")
    assert after["stream_norm"] > 100 * before["stream_norm"]
    assert after["shared_to_spread"] > 50 > 50 * before["shared_to_spread"]
    assert abs(loss - unigram) < 0.1
    _, bp_after, bp_loss, _ = _collapse_run("gpt2-preln", "bp")
    assert bp_after["shared_to_spread"] < 3 and bp_loss < unigram - 0.2  # BP: no collapse, it learns
    post_before, post_after, _, _ = _collapse_run("transformer", "dfa")
    assert post_after["shared_to_spread"] < 5
    growth = post_after["stream_norm"] / post_before["stream_norm"]
    assert growth < 3 < 100 < after["stream_norm"] / before["stream_norm"]  # a bound the pre-LN stream fails
    # the paper's own network with pre-LN blocks and a final norm: its stream grows as GPT-2's does
    pre_before, pre_after, _, _ = _collapse_run("transformer-preln", "dfa")
    assert pre_after["stream_norm"] / pre_before["stream_norm"] > 5 > growth + 2  # seen: 10.9


def test_bp_does_not_read_the_error_site():
    """The norm-site probe runs BP once per placement: with the error at the logits or at the decoder's
    input, BP's training is the same computation, so the same parameters after a few steps, bit for bit."""
    torch.manual_seed(0)
    x = torch.randint(0, 50, (4, 8))
    trained = []
    for norm in ("post", "pre"):
        for error_at in ("decoder_input", "logits"):
            torch.manual_seed(0)
            model = PaperTransformer(50, 8, 2, 16, 2, 32, 0.1, error_at=error_at, norm=norm)
            method = create("bp", {})
            method.prepare(model, lambda: model(x), 0)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
            for _ in range(3):
                optimizer.zero_grad()
                method.backward(model(x), lambda o: torch.nn.functional.cross_entropy(o.flatten(0, 1), x.flatten()))
                optimizer.step()
            trained.append([p.detach().clone() for p in model.parameters()])
    for a, b in ((0, 1), (2, 3)):
        assert all(torch.equal(p, q) for p, q in zip(trained[a], trained[b]))
    assert not all(torch.equal(p, q) for p, q in zip(trained[0], trained[2]))  # the placements do differ


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
    nested = lm_data.wikitext_splits(write_wikitext(tmp_path / "hub" / "wikitext-2-raw-v1"), "wikitext-2")
    assert flat == nested
    assert [len(flat[k]) for k in ("train", "val", "test")] == [121, 21, 21]  # heading + paragraphs, no blanks
    assert flat["train"][0] == "= Title =" and all(line for line in flat["train"])
    with pytest.raises(lm_data.LMDataError, match="no such folder"):
        lm_data.wikitext_splits(tmp_path / "nothing")


def test_wikitext_folder_of_both_releases_gives_each_its_own_files_and_refuses_ambiguity(tmp_path):
    write_wikitext(tmp_path / "data" / "wikitext-2-raw", (10, 2, 2))
    write_wikitext(tmp_path / "data" / "wikitext-103-raw", (30, 3, 3))
    assert lm_data.find_wikitext(tmp_path / "data", "wikitext-103")["train"].parent.name == "wikitext-103-raw"
    assert lm_data.find_wikitext(tmp_path / "data", "wikitext-2")["train"].parent.name == "wikitext-2-raw"
    with pytest.raises(lm_data.LMDataError, match="holds wikitext-2-raw, not wikitext-103"):
        lm_data.find_wikitext(tmp_path / "data" / "wikitext-2-raw", "wikitext-103")
    write_wikitext(tmp_path / "data" / "mirror" / "wikitext-103-raw-v1", (30, 3, 3))
    with pytest.raises(lm_data.LMDataError, match=r"ambiguous, wikitext-103 files in 2 folders"):
        lm_data.find_wikitext(tmp_path / "data", "wikitext-103")
    only2 = tmp_path / "only2"
    write_wikitext(only2 / "wikitext-2-raw", (10, 2, 2))
    with pytest.raises(lm_data.LMDataError, match="no wiki.train.raw for wikitext-103"):
        lm_data.find_wikitext(only2, "wikitext-103")


@pytest.mark.parametrize("fault, message", [
    ("empty", r"wiki.valid.raw: empty split"),
    ("blank", r"wiki.valid.raw: empty split"),
    ("latin1", r"wiki.valid.raw:3: not UTF-8"),
    ("missing", r"wiki.test.raw: missing"),
])
def test_broken_wikitext_files_are_refused_with_one_line_naming_the_file(tmp_path, fault, message):
    folder = write_wikitext(tmp_path / "wikitext-2-raw")
    valid = folder / "wiki.valid.raw"
    if fault == "empty":
        valid.write_bytes(b"")
    elif fault == "blank":
        valid.write_text("\n \n\n")
    elif fault == "latin1":
        valid.write_bytes(" = T = \n\n caf\xe9 au lait \n".encode("latin-1"))
    else:
        (folder / "wiki.test.raw").unlink()
    with pytest.raises(lm_data.LMDataError, match=message) as caught:
        lm_data.wikitext_splits(tmp_path, "wikitext-2")
    assert "\n" not in str(caught.value)


def test_split_ids_are_encoded_in_chunks_into_a_cached_memory_map_keyed_by_content(tmp_path, monkeypatch):
    import numpy as np

    monkeypatch.setattr(lm_data, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(lm_data, "ENCODE_CHUNK_LINES", 7)  # many chunks: the seams must not show
    folder = write_wikitext(tmp_path / "w", (60, 5, 5))
    source = lm_data.TextSource.from_files("wikitext-2", lm_data.find_wikitext(folder, "wikitext-2"))
    tok = lm_data.bpe_tokenizer(source.lines["train"](), 300, source.keys["train"])
    tok_key = lm_data.tokenizer_key(source.keys["train"], 300)
    ids = lm_data.encode_cached(tok, tok_key, source.keys["train"], source.lines["train"]())
    expected = [i for line in source.lines["train"]() for i in tok.encode(line).ids]
    assert isinstance(ids, np.memmap) and ids.dtype == np.int32 and ids.tolist() == expected
    assert len(list((tmp_path / "cache").glob("ids-*.i32"))) == 1
    again = lm_data.encode_cached(tok, tok_key, source.keys["train"], iter(["never read"]))
    assert again.tolist() == expected  # from the cache: same content key, same tokenizer
    (folder / "wiki.train.raw").write_text(" a changed file with other words entirely . \n")
    changed = lm_data.TextSource.from_files("wikitext-2", lm_data.find_wikitext(folder, "wikitext-2"))
    assert changed.keys["train"] != source.keys["train"]
    assert lm_data.encode_cached(tok, tok_key, changed.keys["train"], changed.lines["train"]()).tolist() \
        == tok.encode("a changed file with other words entirely .").ids


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
    model = PaperTransformer(40, 8, 1, 16, 2, 32, 0.0).eval()
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
    runs, _ = plan(["lm/wikitext-2/transformer"], ["dfa-micro"], "smoke", [0], overrides={"data_dir": str(folder)})
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
    cell = dict(dataset="wiki-gensim", model="transformer")
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


@pytest.mark.parametrize("fault, message", [
    ("empty", "wiki.valid.raw: empty split"),
    ("latin1", "wiki.test.raw:2: not UTF-8"),
    ("ambiguous", "ambiguous, wikitext-2 files in 2 folders"),
    ("short", "the val split has"),
])
def test_bad_wikitext_is_refused_before_training_exit_2_one_line_nothing_written(tmp_path, monkeypatch, capsys,
                                                                               fault, message):
    from dfabench.cli import main

    monkeypatch.setattr(lm_data, "CACHE", tmp_path / "cache")
    root = tmp_path / "data"
    folder = write_wikitext(root / "wikitext-2-raw", (300, 40, 40))
    extra = []
    if fault == "empty":
        (folder / "wiki.valid.raw").write_text("\n\n")
    elif fault == "latin1":
        (folder / "wiki.test.raw").write_bytes(" = T = \n na\xefve \n".encode("latin-1"))
    elif fault == "ambiguous":
        write_wikitext(root / "copy" / "wikitext-2-raw-v1", (300, 40, 40))
    else:  # a split shorter than one window of the context
        (folder / "wiki.valid.raw").write_text(" a b \n")
        extra = ["--set", "context=16"]
    results = tmp_path / "results"
    code = main(["run", "lm/wikitext-2/transformer", "--method", "dfa", "--scale", "smoke", "--results", str(results),
                 "--set", f"data_dir={root}", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and message in err[0]
    assert not results.exists()  # nothing written
