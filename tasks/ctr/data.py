"""Click logs for the `ctr` task, all reduced to categorical fields (the standard CTR recipe).

* ``criteo``: the official Criteo Kaggle ``train.txt`` (label, 13 integer fields I1-I13, 26 hashed
  categorical fields C1-C26, tab-separated) from a path the user gives. Streamed in chunks twice:
  pass 1 counts values, pass 2 encodes rows into a memory-mapped ``(rows, 39)`` int32 array, so the
  45M rows never sit in memory at once. Integers are log-bucketed (``v > 2 -> floor(log(v)^2)``, the
  Criteo winners' rule; missing -> its own index); every field's values seen at least ``min_count``
  times get an index, the rest share the out-of-vocabulary index 0. Every line is checked first
  (``check_criteo_file``); the encoding is cached under the user's cache folder keyed by the file's
  content (``dfabench.cache``: ``ctr/criteo-<hash>-min<min_count>/``), never beside the file; rows are
  split 80/10/10 at random with a fixed seed.
* ``movielens``: MovieLens-100K from inside the ``recbole`` wheel (installed, never imported); a click
  is a rating >= 4; fields user, item, age, gender, occupation, release year and first genre.
* ``synthetic``: a Criteo-shaped generator: 13 integer fields (log-normal counts) and 26 categorical
  fields with power-law (Zipf) value frequencies and vocabularies from 10 to 10,000, through the
  same bucketing and vocabulary code as Criteo. Clicks follow a planted logit: first-order weights of
  the values, pairwise interactions between planted field pairs (dot products of hidden value
  vectors), a third-order interaction and a factorization machine's term over all field pairs
  (``fm_scale``), shifted to a base click rate of 0.25 (Criteo: 0.26). The
  balance of these is a set of knobs; ``SYNTHETIC_LOGS`` names three settings: ``synthetic``
  (calibrated by BP's margins toward Criteo's), ``synthetic-interactions`` (the stress test: the
  earlier default, mostly rank-4 interactions) and ``synthetic-rank1`` (the stress logs with
  one-dimensional hidden vectors, a diagnostic run only when named; see tasks/ctr/README.md).
"""
from __future__ import annotations

import importlib.util
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

INT_FIELDS = [f"I{i}" for i in range(1, 14)]
CAT_FIELDS = [f"C{i}" for i in range(1, 27)]
CRITEO_COLUMNS = ["label", *INT_FIELDS, *CAT_FIELDS]


class CTRDataError(RuntimeError):
    pass


@dataclass
class Encoded:
    """Rows of field indices (int32; 0 = out of vocabulary) and 0/1 labels; vocab size per field."""

    x: np.ndarray
    y: np.ndarray
    field_dims: list[int]
    fields: list[str]
    planted: dict[str, float] | None = None  # synthetic logs: how much of the click logit is learnable


def bucket_integer(values: pd.Series) -> pd.Series:
    """Criteo's integer rule as strings: missing -> 'nan', v <= 2 -> v, else floor(log(v)^2)."""
    v = pd.to_numeric(values, errors="coerce")
    out = v.where(v <= 2, np.floor(np.log(v.clip(lower=3)) ** 2))
    return out.map(lambda a: "nan" if pd.isna(a) else str(int(a)))


def _field_strings(frame: pd.DataFrame, int_fields: list[str], cat_fields: list[str]) -> dict[str, pd.Series]:
    out = {f: bucket_integer(frame[f]) for f in int_fields}
    out.update({f: frame[f].astype("string").fillna("nan") for f in cat_fields})
    return out


def build_vocab(counts: dict[str, dict[str, int]], min_count: int) -> dict[str, dict[str, int]]:
    """Per field: values seen at least min_count times -> 1..n in order of first sight; 0 is OOV."""
    return {f: {v: i + 1 for i, v in enumerate(k for k, c in c_.items() if c >= min_count)}
            for f, c_ in counts.items()}


def _encode(strings: dict[str, pd.Series], vocab: dict[str, dict[str, int]], fields: list[str]) -> np.ndarray:
    return np.stack([strings[f].map(vocab[f]).fillna(0).astype(np.int32).to_numpy() for f in fields], axis=1)


_INTEGER = re.compile(rb"-?[0-9]+")


def check_criteo_file(source: Path) -> int:
    """Refuse a file that is not Criteo's layout, naming the line: every line has 40 tab-separated
    fields (a label, 13 integers, 26 categorical values), the label is 0 or 1, an integer field is
    empty or an integer. A streamed pass; returns the number of lines."""
    number = 0
    with open(source, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            fields = raw.rstrip(b"\r\n").split(b"\t")
            if len(fields) != len(CRITEO_COLUMNS):
                raise CTRDataError(f"{source}:{number}: {len(fields)} tab-separated fields; Criteo's lines have "
                                   f"{len(CRITEO_COLUMNS)} (a label, 13 integers, 26 categorical values)")
            if fields[0] not in (b"0", b"1"):
                raise CTRDataError(f"{source}:{number}: label {_shown(fields[0])} is not 0 or 1")
            for name, value in zip(INT_FIELDS, fields[1:14]):
                if value and not _INTEGER.fullmatch(value):
                    raise CTRDataError(f"{source}:{number}: {name} {_shown(value)} is not an integer")
    if number == 0:
        raise CTRDataError(f"{source}: empty file")
    return number


def _shown(value: bytes) -> str:
    return repr(value[:20].decode("utf-8", errors="replace"))


def criteo(path: str | None, min_count: int = 10, chunk_rows: int = 1_000_000) -> Encoded:
    """Criteo's train.txt, checked line by line once, encoded into memory maps cached under the
    user's cache folder (``dfabench.cache``) and keyed by the file's content: a changed file is
    re-checked and re-encoded, the same file in another folder reuses the cache."""
    from dfabench.cache import cache_dir
    from dfabench.harness.identity import content_hash

    if not path:
        raise CTRDataError("criteo: set path to Criteo Kaggle's train.txt (--set path=/data/criteo/train.txt)")
    source = Path(path).expanduser()
    if not source.is_file():
        raise CTRDataError(f"criteo: {source} is not a file")
    cache = cache_dir("ctr", f"criteo-{content_hash(str(source))[:16]}-min{min_count}")
    fields = INT_FIELDS + CAT_FIELDS
    if (cache / "x.npy").exists() and (cache / "done").exists():
        meta = (cache / "field_dims.txt").read_text().split()
        return Encoded(np.load(cache / "x.npy", mmap_mode="r"), np.load(cache / "y.npy"), list(map(int, meta)), fields)

    def chunks():
        return pd.read_csv(source, sep="\t", header=None, names=CRITEO_COLUMNS, dtype=str, chunksize=chunk_rows)

    check_criteo_file(source)
    counts: dict[str, dict[str, int]] = {f: {} for f in fields}
    rows = 0
    for frame in chunks():  # pass 1: value counts
        rows += len(frame)
        for f, s in _field_strings(frame, INT_FIELDS, CAT_FIELDS).items():
            for value, c in s.value_counts(sort=False).items():
                counts[f][value] = counts[f].get(value, 0) + int(c)
    vocab = build_vocab(counts, min_count)
    cache.mkdir(parents=True, exist_ok=True)
    x = np.lib.format.open_memmap(cache / "x.npy", mode="w+", dtype=np.int32, shape=(rows, len(fields)))
    y = np.empty(rows, dtype=np.float32)
    start = 0
    for frame in chunks():  # pass 2: encode into the memory map
        x[start:start + len(frame)] = _encode(_field_strings(frame, INT_FIELDS, CAT_FIELDS), vocab, fields)
        y[start:start + len(frame)] = frame["label"].astype(np.float32).to_numpy()
        start += len(frame)
    x.flush()
    np.save(cache / "y.npy", y)
    field_dims = [len(vocab[f]) + 1 for f in fields]
    (cache / "field_dims.txt").write_text(" ".join(map(str, field_dims)))
    (cache / "done").write_text("ok\n")
    return Encoded(np.load(cache / "x.npy", mmap_mode="r"), y, field_dims, fields)


def recbole_movielens_dir() -> Path:
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise CTRDataError("movielens: install the recbole wheel for its MovieLens-100K files "
                           "(pip install --no-deps recbole==1.2.1)")
    return Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k"


def movielens(directory: Path | None = None) -> Encoded:
    d = directory or recbole_movielens_dir()
    try:
        inter = pd.read_csv(d / "ml-100k.inter", sep="\t")
        users = pd.read_csv(d / "ml-100k.user", sep="\t")
        items = pd.read_csv(d / "ml-100k.item", sep="\t")
    except FileNotFoundError as err:
        raise CTRDataError(f"movielens: {err.filename} missing") from None
    strip = {c: c.split(":")[0] for frame in (inter, users, items) for c in frame.columns}  # 'user_id:token'
    inter, users, items = (f.rename(columns=strip) for f in (inter, users, items))
    items["genre"] = items["class"].astype(str).str.split().str[0]
    frame = inter.merge(users, on="user_id", how="left").merge(items, on="item_id", how="left")
    frame["age"] = (frame["age"] // 10).astype("Int64")
    fields = ["user_id", "item_id", "age", "gender", "occupation", "release_year", "genre"]
    strings = {f: frame[f].astype("string").fillna("nan") for f in fields}
    counts = {f: strings[f].value_counts(sort=False).to_dict() for f in fields}
    vocab = build_vocab(counts, 1)
    x = _encode(strings, vocab, fields)
    y = (frame["rating"].to_numpy() >= 4).astype(np.float32)
    return Encoded(x, y, [len(vocab[f]) + 1 for f in fields], fields)


# The generator's knobs per named synthetic dataset (the same rows; other clicks). ``synthetic`` is
# calibrated by BP's margins toward Criteo's (provenance: results/tuning/ctr-criteo-shape, made by
# benchmarks/ctr_synthetic_balance.py, folder first0.5-every1-inter0.63-rank1-third0.0-fm1.85; the
# margins on 3 seeds in tasks/ctr/README.md, "The default logs"): first-order weights on every field,
# a factorization machine's own term over all 741 field pairs (what FM fits, and BP's deep models at
# small scale fit less well), and 6 rank-1 planted pairs on top (what the deep models fit better).
# ``synthetic-interactions`` is the earlier default, the stress test for DFA's one-scalar error;
# ``synthetic-rank1`` is that with one-dimensional hidden vectors (a diagnostic). Every knob, with the
# generator's defaults, enters the run ids (``synthetic_settings``, ``CTRTask.generator_version``).
INTERACTION_HEAVY = {"first_order_std": 0.3, "first_order_every": 3, "interaction_scale": 1.0}
SYNTHETIC_LOGS: dict[str, dict[str, float]] = {
    "synthetic": {"first_order_std": 0.5, "first_order_every": 1, "interaction_scale": 0.63, "interaction_rank": 1,
                  "third_order_scale": 0.0, "fm_scale": 1.85},
    "synthetic-interactions": INTERACTION_HEAVY,
    "synthetic-rank1": {**INTERACTION_HEAVY, "interaction_rank": 1},
}


def synthetic_settings(dataset: str) -> dict[str, float]:
    """Every setting of a named synthetic dataset's generator but the row count (a
    hyper-parameter): the generator's defaults, that dataset's knobs and the seed its logs are drawn
    with. Their hash is the logs' generator version, part of every run's id."""
    import inspect

    defaults = {name: p.default for name, p in inspect.signature(synthetic).parameters.items()
                if p.default is not inspect.Parameter.empty}
    return {**defaults, **SYNTHETIC_LOGS[dataset], "seed": 0}


def synthetic(rows: int, seed: int = 0, base_rate: float = 0.25, min_count: int = 2,
              interaction_rank: int = 4, first_order_std: float = 0.3, first_order_every: int = 3,
              interaction_scale: float = 1.0, third_order_scale: float = 0.4,
              interaction_pairs: int = 6, fm_rank: int = 2, fm_scale: float = 0.0) -> Encoded:
    """``interaction_rank``: length of the hidden value vectors whose dot products make the planted
    interactions (4 by default); the interaction terms are scaled so their variance does not depend
    on it. Rank 1 makes every interaction a product of per-value scalars. Every
    ``first_order_every``-th field has first-order weights of std ``first_order_std``;
    ``interaction_scale`` multiplies the interaction terms; ``third_order_scale`` is the weight of the
    third-order term beside the pairwise ones' 0.6 (what no factorization machine can fit).
    ``interaction_pairs``: how many field pairs interact; 6 is a fixed list, any other number draws
    that many pairs (their total variance kept that of 6), so a large one spreads the pairwise signal
    over many weak pairs, as a factorization machine models it. ``fm_scale``: the std of a
    factorization machine's own term, every value one hidden vector of length ``fm_rank`` shared by
    all its field pairs, summed over all 741 pairs (0: none, and nothing else drawn differently)."""
    rng = np.random.default_rng(seed)
    data = {"label": np.zeros(rows)}
    for f in INT_FIELDS:
        counts = np.floor(rng.lognormal(mean=rng.uniform(0, 4), sigma=1.5, size=rows))
        counts[rng.random(rows) < 0.2] = np.nan  # Criteo's integers are often missing
        data[f] = counts
    vocab_sizes = np.geomspace(10, 10_000, len(CAT_FIELDS)).astype(int)
    for f, size in zip(CAT_FIELDS, vocab_sizes):
        ranks = np.minimum(rng.zipf(1.3, size=rows), size) - 1  # power-law frequencies
        data[f] = ranks
    frame = pd.DataFrame(data)
    strings = _field_strings(frame.astype({f: "Int64" for f in CAT_FIELDS}), INT_FIELDS, CAT_FIELDS)
    fields = INT_FIELDS + CAT_FIELDS
    counts = {f: strings[f].value_counts(sort=False).to_dict() for f in fields}
    vocab = build_vocab(counts, min_count)
    x = _encode(strings, vocab, fields)
    # The planted click model, on the encoded values (each value of each field gets hidden weights).
    dims = [len(vocab[f]) + 1 for f in fields]
    first = [rng.normal(0, first_order_std, d) for d in dims]
    vectors = [rng.normal(0, 1, (d, interaction_rank)) for d in dims]
    strength = interaction_scale * math.sqrt(4 / interaction_rank)
    first_order = sum(first[j][x[:, j]] for j in range(0, len(fields), first_order_every))
    interactions = np.zeros(rows)
    pairs = [(13, 14), (15, 20), (0, 16), (3, 25), (17, 30), (5, 21)]
    if interaction_pairs != len(pairs):  # drawn apart, so that the rows and other weights stay the same
        every_pair = [(a, b) for a in range(len(fields)) for b in range(a + 1, len(fields))]
        chosen = np.random.default_rng(seed + 1).choice(len(every_pair), interaction_pairs, replace=False)
        pairs = [every_pair[i] for i in sorted(chosen)]
    pair_weight = 0.6 * math.sqrt(6 / len(pairs))
    for a, b in pairs:
        interactions = interactions + pair_weight * strength * (vectors[a][x[:, a]] * vectors[b][x[:, b]]).sum(1)
    interactions = interactions + third_order_scale * strength * (vectors[18][x[:, 18]] * vectors[22][x[:, 22]] * vectors[27][x[:, 27]]).sum(1)
    if fm_scale:  # drawn apart, so that the other weights stay the same
        interactions = interactions + fm_scale * fm_term(x, dims, fm_rank, np.random.default_rng(seed + 2))
    logit = first_order + interactions
    # shift the logit so that the mean click probability is the base rate (bisection on the bias)
    low, high = -20.0, 20.0
    for _ in range(60):
        bias = (low + high) / 2
        rate = float(np.mean(1 / (1 + np.exp(-(logit + bias)))))
        low, high = (bias, high) if rate < base_rate else (low, bias)
    p = 1 / (1 + np.exp(-(logit + bias)))
    y = (rng.random(rows) < p).astype(np.float32)
    return Encoded(x, y, dims, fields, planted_summary(y, first_order, interactions))


def fm_term(x: np.ndarray, dims: list[int], rank: int, rng: np.random.Generator) -> np.ndarray:
    """sum over field pairs a < b of <u_a, u_b> (u: one hidden vector per value), scaled to unit std:
    the class a factorization machine fits, computed as (|sum u|^2 - sum |u|^2) / 2."""
    hidden = [rng.normal(0, 1, (d, rank))[x[:, j]] for j, d in enumerate(dims)]
    total = sum(hidden)
    term = 0.5 * ((total ** 2).sum(1) - sum((h ** 2).sum(1) for h in hidden))
    return (term - term.mean()) / term.std()


def planted_summary(y: np.ndarray, first_order: np.ndarray, interactions: np.ndarray) -> dict[str, float]:
    """What a model could learn from the synthetic logs: the share of the planted logit's variance
    in the interaction terms, and the AUC of the planted logit (the ceiling) and of its first-order
    part alone (what per-value scalars can reach)."""
    from sklearn.metrics import roc_auc_score

    first_var, inter_var = float(np.var(first_order)), float(np.var(interactions))
    return {"interaction_share": inter_var / (first_var + inter_var),
            "oracle_auc": float(roc_auc_score(y, first_order + interactions)),
            "first_order_auc": float(roc_auc_score(y, first_order))}


def split(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random 80/10/10 split of row indices, fixed by seed."""
    order = np.random.default_rng(seed).permutation(rows)
    a, b = int(math.floor(0.8 * rows)), int(math.floor(0.9 * rows))
    return np.sort(order[:a]), np.sort(order[a:b]), np.sort(order[b:])
