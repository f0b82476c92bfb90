"""Peak memory of encoding a large WikiText-format training file: the lm task's streamed, cached
memory map against the whole split encoded into one Python list (what the task did before).

    python benchmarks/lm_encoding_memory.py [--words 17000000] [--vocab 32000] [--dir DIR]

Writes ``wiki.{train,valid,test}.raw`` of generated text (a Zipf-distributed vocabulary of made-up
words, WikiText's heading and blank-line layout) under DIR, trains the BPE once (cached), then encodes
the training file in a fresh process per approach and prints each one's peak resident memory
(``ru_maxrss``), its time and the token count. Nothing here is a unit test: it prints figures.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_corpus(folder: Path, words: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lexicon = ["".join(rng.choice(letters, size=rng.integers(2, 11))) for _ in range(60_000)]
    weights = 1.0 / np.arange(1, len(lexicon) + 1) ** 1.1
    weights /= weights.sum()
    folder.mkdir(parents=True, exist_ok=True)
    for name, share in (("wiki.train.raw", 1.0), ("wiki.valid.raw", 0.002), ("wiki.test.raw", 0.002)):
        total = max(int(words * share), 1000)
        # one draw for the whole file (a per-paragraph draw with p= costs O(lexicon) each time)
        drawn = np.searchsorted(np.cumsum(weights), rng.random(total))
        lengths = rng.integers(60, 140, size=total // 60 + 1)
        bounds = np.minimum(np.concatenate([[0], np.cumsum(lengths)]), total)
        with open(folder / name, "w", encoding="utf-8") as out:
            for paragraph, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
                if start == stop:
                    break
                if paragraph % 8 == 0:  # an article heading every 8 paragraphs of ~100 words
                    out.write(f" = Article {paragraph // 8} = \n\n")
                out.write(" " + " ".join(lexicon[i] for i in drawn[start:stop]) + " . \n\n")


def encode_in_child(approach: str, folder: Path, vocab: int) -> dict:
    """Encode the training file in a fresh interpreter, so that each peak is its own."""
    code = f"""
import json, resource, time
from pathlib import Path
import torch
from dfabench.tasks.lm import data
folder = Path({str(folder)!r})
source = data.TextSource.from_files("wikitext-103", data.find_wikitext(folder, "wikitext-103"))
tok = data.bpe_tokenizer(source.lines["train"](), {vocab}, source.keys["train"])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
if {approach!r} == "train":  # the tokenizer alone, so that the encoding children load it from the cache
    ids = torch.zeros(0)
elif {approach!r} == "streamed":
    key = data.tokenizer_key(source.keys["train"], {vocab})
    ids = torch.from_numpy(data.encode_cached(tok, key, source.keys["train"], source.lines["train"]()))
else:  # the former path: every line in a list, every id in a Python list, then one tensor
    lines = list(source.lines["train"]())
    ids = torch.tensor([i for enc in tok.encode_batch(lines) for i in enc.ids], dtype=torch.long)
print(json.dumps({{"tokens": int(ids.numel()), "seconds": time.perf_counter() - start,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "peak_before_encoding_mb": before / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=17_000_000, help="words in the generated training file")
    parser.add_argument("--vocab", type=int, default=32_000, help="BPE vocabulary size (the paper's 32k)")
    parser.add_argument("--dir", help="where to write the corpus and the cache (default: a temporary folder)")
    args = parser.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="dfabench-lm-memory-"))
    folder = root / "wikitext-103-raw"
    if not (folder / "wiki.train.raw").exists():
        start = time.perf_counter()
        write_corpus(folder, args.words)
        print(f"wrote {folder} ({(folder / 'wiki.train.raw').stat().st_size / 2**20:.0f} MiB) in "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    import os

    os.environ["DFABENCH_CACHE"] = str(root / "cache")
    start = time.perf_counter()
    trained = encode_in_child("train", folder, args.vocab)
    print(f"BPE {args.vocab} trained in {time.perf_counter() - start:.0f} s (peak {trained['peak_mb']:.0f} MB)",
          flush=True)
    for approach in ("streamed", "list"):
        (root / "cache" / "lm").mkdir(parents=True, exist_ok=True)
        for stale in (root / "cache" / "lm").glob("ids-*"):
            stale.unlink()  # encode afresh each time; the tokenizer stays cached
        result = encode_in_child(approach, folder, args.vocab)
        print(f"{approach:9s} tokens={result['tokens']:,} encode_s={result['seconds']:.1f} "
              f"peak_rss_mb={result['peak_mb']:.0f} (before encoding {result['peak_before_encoding_mb']:.0f})",
              flush=True)
    print(f"resident memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
