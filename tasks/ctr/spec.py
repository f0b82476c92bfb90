"""What the ctr task offers (light: read by `dfabench list` without importing torch)."""
from dfabench.catalog import Metric, TaskSpec

_FA_WHY = "works layer by layer through nn.Linear only; AutoInt's attention is not one"

SPEC = TaskSpec(
    domain="ctr",
    entry_point="dfabench.tasks.ctr.task:CTRTask",
    datasets={
        "synthetic": "Criteo-shaped generator: 13 integer + 26 categorical fields, CTR 0.25; first-order std 0.5 on "
                     "every field, 6 rank-1 pairwise interactions at scale 0.7, no third-order term (calibrated by BP: "
                     "tasks/ctr/README.md)",
        "movielens": "MovieLens-100K from the recbole wheel: click = rating >= 4; 7 user/item fields",
        "criteo": "Criteo Kaggle train.txt from --set path=... (official; cached after one pass)",
        "synthetic-interactions": "the stress test: synthetic logs whose signal lies mostly in rank-4 interactions",
        "synthetic-rank1": "the stress logs with rank-1 interactions (a diagnostic; run only when named)",
    },
    models={"lr": "logistic regression (the floor; BP only)", "fm": "factorization machine (BP only)",
            "deepfm": "DeepFM: FM + 400-400-400 MLP", "dcn": "deep & cross network: 3 cross layers + MLP",
            "autoint": "AutoInt+: 3 self-attention layers over fields + MLP",
            "afn": "adaptive factorization network: logarithmic layer + MLP",
            "dcnv2": "DCN-V2: full-matrix cross layers + MLP (beyond the paper)"},
    metrics=(Metric("auc", True), Metric("logloss", False)),
    primary_metric="auc",
    table_metrics=("auc", "logloss"),  # as in the paper's Table 2
    capabilities=frozenset({"layerwise"}),
    # Named literally or not at all: official data, and the diagnostic variant of the synthetic logs.
    explicit_datasets=frozenset({"criteo", "synthetic-rank1"}),
    bp_only_models=frozenset({"lr", "fm"}),
    excluded={("autoint", m): f"{m} {_FA_WHY}" for m in ("fa", "sign-symmetry")},
    data={"movielens": ("movielens",), "criteo": ("your-files",)},
)
