"""What the lm task offers (light: read by `dfabench list` without importing torch or transformers).

tasks/lm/task.py reads them from here, as every task does.
"""
from dfabench.catalog import Metric, TaskSpec

DATASETS = {"wiki-gensim": "106 Wikipedia articles from gensim's test data, markup stripped, split by article",
            "kjv": "King James Bible (Debian bible-kjv), split by blocks of 100 verses",
            "wikitext-103": "official WikiText-103 raw (local files or `datasets` download)",
            "wikitext-2": "official WikiText-2 raw (local files or `datasets` download)"}

PROBE_MODELS = ("transformer-noln", "transformer-logits", "transformer-preln", "transformer-preln-logits")

SPEC = TaskSpec(
    domain="lm",
    entry_point="dfabench.tasks.lm.task:LMTask",
    datasets=DATASETS,
    models={"transformer": "the paper's post-LN Transformer (Table 5): error at the decoder input, "
                           "macro point after norm2, micro after norm1 and the FFN activation",
            "transformer-noln": "the paper's Transformer with its LayerNorms removed (identities): the "
                                "normalisation-placement probe's no-LN arm, on kjv only",
            "transformer-logits": "the paper's Transformer with DFA's error taken at the logits (error_at: logits): "
                                  "the normalisation probe's post-LN/logits arm, on kjv only",
            "transformer-preln": "the paper's Transformer with pre-LN blocks and a final LayerNorm: the "
                                 "normalisation probe's pre-LN/decoder-input arm, on kjv only",
            "transformer-preln-logits": "the pre-LN variant with the error at the logits: the normalisation "
                                        "probe's pre-LN/logits arm, on kjv only",
            "gpt2-preln": "GPT-2 (pre-LN, final LayerNorm; transformers) from scratch: DFA collapses it to "
                          "the unigram distribution"},
    # every dataset x the paper's two models; the normalisation probes' variants on kjv only (results/probes/)
    cells_=tuple([(d, m) for d in DATASETS for m in ("transformer", "gpt2-preln")]
                 + [("kjv", m) for m in PROBE_MODELS]),
    explicit_models=frozenset(PROBE_MODELS),  # the LayerNorm probes': run when named, not by 'lm/*/*'

    metrics=(Metric("perplexity", False), Metric("loss", False)),
    primary_metric="perplexity",
    point_tags=frozenset({"default", "micro"}),
    explicit_datasets=frozenset({"wikitext-103", "wikitext-2"}),
    requires=("torch", "transformers", "tokenizers"),
    extra="lm",
    data={"wiki-gensim": ("wiki-gensim",), "kjv": ("kjv",),
          "wikitext-103": ("your-files",), "wikitext-2": ("your-files",)},
)
