"""Corpora and the BPE tokeniser of the lm task.

Offline default: the King James Bible from Debian's ``bible-kjv`` (read through its ``bible`` CLI),
split into train/val/test by contiguous blocks of verses. The BPE tokeniser (``tokenizers``) is
trained on the training split only; it and each split's token ids (an int32 memory map, encoded in
streamed chunks) are cached under $DFABENCH_CACHE/lm (default ~/.cache/dfabench/lm), keyed by
content.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from dfabench.cache import cache_dir
from dfabench.harness.identity import content_hash

CACHE = cache_dir("lm")


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


def text_key(lines: Iterable[str]) -> str:
    """A content hash of a corpus held in memory (lines joined by newlines)."""
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


@dataclass
class TextSource:
    """A corpus split three ways: per split, a content key and a way to stream its lines again.

    In-memory corpora (KJV, the gensim sample) and files (WikiText) look the same to the encoder, which
    never holds more than one chunk of a split's lines or ids in Python objects."""

    name: str
    keys: dict[str, str]
    lines: dict[str, Callable[[], Iterable[str]]]

    @classmethod
    def from_lists(cls, name: str, splits: dict[str, list[str]]) -> "TextSource":
        return cls(name, {k: text_key(v) for k, v in splits.items()},
                   {k: (lambda v=v: iter(v)) for k, v in splits.items()})

    @classmethod
    def from_files(cls, name: str, files: dict[str, Path]) -> "TextSource":
        # the harness's content hash (streamed, memoised per size and mtime): the same key as the run id's
        return cls(name, {k: content_hash(str(p))[:16] for k, p in files.items()},
                   {k: (lambda p=p: raw_lines(p)) for k, p in files.items()})


def bpe_tokenizer(train_lines: Iterable[str], vocab_size: int, content_key: str | None = None):
    """A byte-level BPE trained on the training split, cached by content and vocabulary size.

    ``content_key`` names the training text (``TextSource.keys['train']``); without it the lines
    (then a list) are hashed here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if content_key is None:
        train_lines = list(train_lines)
        content_key = text_key(train_lines)
    path = CACHE / f"bpe-{tokenizer_key(content_key, vocab_size)}.json"
    if path.exists():
        return Tokenizer.from_file(str(path))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(train_lines, trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tok.save(str(tmp))
    tmp.replace(path)
    return tok


def tokenizer_key(content_key: str, vocab_size: int) -> str:
    return hashlib.sha256(f"{content_key}|{vocab_size}".encode()).hexdigest()[:16]


ENCODE_CHUNK_LINES = 20_000  # lines per encode_batch call: bounds the Python objects alive at once


def encode_cached(tok, tok_key: str, content_key: str, lines: Iterable[str]) -> np.ndarray:
    """Token ids of a split as a read-only-on-disk int32 memory map, cached under the cache folder
    and keyed by the split's content and the tokenizer; encoded in streamed chunks, so that
    WikiText-103's ~100M words never become a Python list of ids."""
    path = CACHE / f"ids-{hashlib.sha256(f'{tok_key}|{content_key}'.encode()).hexdigest()[:16]}.i32"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as out:
            chunk: list[str] = []
            for line in itertools.chain(lines, [None]):
                if line is not None:
                    chunk.append(line)
                if chunk and (line is None or len(chunk) >= ENCODE_CHUNK_LINES):
                    for enc in tok.encode_batch(chunk):
                        out.write(np.asarray(enc.ids, dtype=np.int32).tobytes())
                    chunk = []
        tmp.replace(path)
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=np.int32)
    return np.memmap(path, dtype=np.int32, mode="c")  # copy-on-write: torch may wrap it without warnings


class LMDataError(RuntimeError):
    """A corpus a user pointed at is not usable (missing, ambiguous, empty, not UTF-8): one line."""


WIKITEXT_FILES = {"train": "wiki.train.raw", "val": "wiki.valid.raw", "test": "wiki.test.raw"}


def _wikitext_folder_names(dataset: str) -> set[str]:
    """The names a WikiText release's folder goes by: the zip's and the hub's."""
    return {dataset, f"{dataset}-raw", f"{dataset}-raw-v1"}


def find_wikitext(root: str | Path, dataset: str) -> dict[str, Path]:
    """The three raw files of ``dataset`` (wikitext-2 or wikitext-103) under ``root``.

    ``root`` may hold the files itself, or a folder named after the dataset (``wikitext-103-raw``,
    ``wikitext-103-raw-v1``...) anywhere below it. Files of another release are never taken: a folder
    holding both WikiText-2 and -103 gives each its own files, and two candidate folders for one
    dataset are refused as ambiguous rather than picked at random.
    """
    root = Path(root)
    if not root.is_dir():
        raise LMDataError(f"{root}: no such folder (data_dir for {dataset})")
    ours = _wikitext_folder_names(dataset)
    others = {name for other in ("wikitext-2", "wikitext-103") if other != dataset
              for name in _wikitext_folder_names(other)}
    if all((root / name).is_file() for name in WIKITEXT_FILES.values()):
        if root.name in others:
            raise LMDataError(f"{root}: this folder holds {root.name}, not {dataset}")
        return {split: root / name for split, name in WIKITEXT_FILES.items()}
    candidates = sorted(d for d in [root, *root.rglob("*")] if d.is_dir() and d.name in ours
                        and (d / WIKITEXT_FILES["train"]).is_file())
    if len(candidates) > 1:
        raise LMDataError(f"{root}: ambiguous, {dataset} files in {len(candidates)} folders: "
                          + ", ".join(str(c.relative_to(root)) for c in candidates))
    if not candidates:
        raise LMDataError(f"{root}: no {WIKITEXT_FILES['train']} for {dataset} (expected in a folder named "
                          f"{' or '.join(sorted(ours))}, or in {root} itself)")
    folder = candidates[0]
    for name in WIKITEXT_FILES.values():
        if not (folder / name).is_file():
            raise LMDataError(f"{folder / name}: missing ({dataset} needs {', '.join(WIKITEXT_FILES.values())})")
    return {split: folder / name for split, name in WIKITEXT_FILES.items()}


def raw_lines(path: Path):
    """Non-blank lines of a raw text file, stripped, read as a stream; bytes that are not UTF-8 are
    refused with the file and line number."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as err:
                raise LMDataError(f"{path}:{number}: not UTF-8 ({err.reason} at byte {err.start})") from None
            if line:
                yield line


def check_raw_file(path: Path) -> None:
    """Refuse, before training, a split file that is empty or not UTF-8 (one streamed pass)."""
    if not any(True for _ in raw_lines(path)):
        raise LMDataError(f"{path}: empty split (no non-blank line)")


def wikitext_splits(root: str | Path, dataset: str = "wikitext-2") -> dict[str, list[str]]:
    """WikiText raw files as lists of lines (small corpora and tests; ``TextSource`` streams them).

    Blank lines are dropped; headings (`` = Title = ``) stay, as in the official raw text.
    """
    files = find_wikitext(root, dataset)
    for path in files.values():
        check_raw_file(path)
    return {split: list(raw_lines(path)) for split, path in files.items()}


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
