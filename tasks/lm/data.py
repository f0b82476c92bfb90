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
