"""Corpora and the BPE tokeniser of the lm task.

Offline default: the King James Bible from Debian's ``bible-kjv`` (read through its ``bible`` CLI),
split into train/val/test by contiguous blocks of verses. The BPE tokeniser (``tokenizers``) is
trained on the training split only and cached under ~/.cache/dfabench/lm.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

CACHE = Path(os.environ.get("DFABENCH_CACHE", Path.home() / ".cache" / "dfabench")) / "lm"


def kjv_lines() -> list[str]:
    """Every verse of the KJV as one line (verse reference dropped)."""
    if shutil.which("bible") is None:
        raise FileNotFoundError("the KJV corpus needs Debian's bible-kjv package (apt-get install bible-kjv)")
    # A huge line width keeps each verse on one line: "  <n> <text>"; chapter headings do not start with a space.
    out = subprocess.run(["bible", "-l100000", "Gen1:1-Rev22:21"], capture_output=True, text=True,
                         check=True).stdout
    lines = []
    for line in out.splitlines():
        match = re.match(r"^\s+\d+ (.+)$", line)
        if match:
            lines.append(match.group(1).strip())
    return lines


def split_blocks(lines: list[str], block: int = 100) -> dict[str, list[str]]:
    """Contiguous blocks of `block` lines: every 20th block to val, the next to test (deterministic)."""
    splits = {"train": [], "val": [], "test": []}
    for i in range(0, len(lines), block):
        k = (i // block) % 20
        name = "val" if k == 18 else "test" if k == 19 else "train"
        splits[name].extend(lines[i:i + block])
    return splits


def bpe_tokenizer(train_lines: list[str], vocab_size: int):
    """A byte-level BPE trained on the training split, cached by content and vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    key = hashlib.sha256(("\n".join(train_lines) + f"|{vocab_size}").encode()).hexdigest()[:16]
    path = CACHE / f"bpe-{key}.json"
    if path.exists():
        return Tokenizer.from_file(str(path))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(train_lines, trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tok.save(str(tmp))
    tmp.replace(path)
    return tok


def wikitext_splits(root: str | Path) -> dict[str, list[str]]:
    """WikiText raw files (wiki.train.raw / wiki.valid.raw / wiki.test.raw) from a local folder.

    Blank lines are dropped; headings (`` = Title = ``) stay, as in the official raw text.
    """
    root = Path(root)
    names = {"train": "wiki.train.raw", "val": "wiki.valid.raw", "test": "wiki.test.raw"}
    splits = {}
    for split, name in names.items():
        found = list(root.rglob(name))  # also finds the wikitext-*-raw-v1/ layout
        if not found:
            raise FileNotFoundError(f"{name} not found under {root}")
        text = found[0].read_text(encoding="utf-8")
        splits[split] = [line.strip() for line in text.splitlines() if line.strip()]
    return splits


def wikitext_hub_splits(name: str) -> dict[str, list[str]]:
    """Official WikiText through `datasets` (downloads; only when the user asks for it)."""
    from datasets import load_dataset

    ds = load_dataset("wikitext", name)
    return {ours: [t.strip() for t in ds[theirs]["text"] if t.strip()]
            for ours, theirs in (("train", "train"), ("val", "validation"), ("test", "test"))}


GENSIM_WIKI = "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
_MARKUP = [  # applied in order; enough to turn MediaWiki source into running text
    (re.compile(r"<!--.*?-->", re.S), ""),
    (re.compile(r"<ref[^>]*/>|<ref[^>]*>.*?</ref>", re.S), ""),
    (re.compile(r"\{\|.*?\|\}", re.S), ""),  # tables
    # file, image, category and interlanguage links (no nested-quantifier pattern: it backtracks
    # catastrophically on unbalanced brackets; a caption with inner links may leave a remnant)
    (re.compile(r"\[\[(?:File|Image|Category|[a-z]{2,3}(?:-[a-z]+)?):[^\]]*\]\]"), ""),
    (re.compile(r"\[\[[^\]|]*\|([^\]]*)\]\]"), r"\1"),
    (re.compile(r"\[\[([^\]]*)\]\]"), r"\1"),
    (re.compile(r"\[https?://\S+ ([^\]]*)\]"), r"\1"),
    (re.compile(r"\[https?://\S+\]"), ""),
    (re.compile(r"<[^>]+>"), ""),
    (re.compile(r"'{2,}"), ""),
    (re.compile(r"^[=*#:;]+\s*|\s*=+\s*$", re.M), ""),
    (re.compile(r"&nbsp;|&amp;|&quot;"), " "),
    (re.compile(r"\{\{|\}\}"), ""),  # what is left of templates whose content holds stray braces
]
_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")


def strip_wiki_markup(text: str) -> list[str]:
    """Paragraph lines of an article with templates, references, tables and link markup removed."""
    while True:  # templates nest: remove innermost first
        text, n = _TEMPLATE.subn("", text)
        if not n:
            break
    for pattern, repl in _MARKUP:
        text = pattern.sub(repl, text)
    return [line.strip() for line in text.splitlines() if len(line.split()) >= 3]


def gensim_wiki_articles(path: str | Path | None = None) -> list[tuple[str, list[str]]]:
    """(title, lines) of the main-namespace articles in gensim's test dump (not redirects)."""
    import bz2
    import importlib.util
    import xml.etree.ElementTree as ET

    if path is None:
        spec = importlib.util.find_spec("gensim")  # locates the wheel without importing gensim
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("the wiki-gensim corpus needs the gensim wheel (pip install --no-deps gensim)")
        path = Path(spec.submodule_search_locations[0]) / GENSIM_WIKI
    articles = []
    with bz2.open(path) as fh:
        for _, elem in ET.iterparse(fh):
            if elem.tag.rsplit("}", 1)[-1] != "page":
                continue
            fields = {child.tag.rsplit("}", 1)[-1]: child for child in elem.iter()}
            text = fields["text"].text or "" if "text" in fields else ""
            if fields["ns"].text == "0" and not text.lstrip().upper().startswith("#REDIRECT"):
                lines = strip_wiki_markup(text)
                if lines:
                    articles.append((fields["title"].text, lines))
            elem.clear()
    return articles


def split_articles(articles: list[tuple[str, list[str]]], every: int = 10) -> dict[str, list[str]]:
    """Whole articles to one split, by a hash of the title (deterministic, order-free): 1/every each to
    val and test."""
    splits = {"train": [], "val": [], "test": []}
    for title, lines in articles:
        k = int(hashlib.sha256(title.encode()).hexdigest(), 16) % every
        splits["val" if k == 0 else "test" if k == 1 else "train"].extend(lines)
    return splits
