import pickle

import numpy as np
import torch

from dfabench.engine import FeedbackPoint
from dfabench.hparams import resolve
from dfabench.methods import create
from dfabench.tasks.vision.data import load_cifar10
from dfabench.tasks.vision.models import LeNet, ResNet
from dfabench.tasks.vision.task import VisionTask


def _write_cifar(tmp_path, n=4):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
        with open(tmp_path / name, "wb") as f:
            pickle.dump(batch, f)
    with open(tmp_path / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"c%d" % i for i in range(10)]}, f)
    return batch


def test_cifar10_round_trip(tmp_path):
    last = _write_cifar(tmp_path)
    images = load_cifar10(str(tmp_path))
    assert images.train_x.shape == (20, 3, 32, 32) and images.test_x.shape == (4, 3, 32, 32)
    assert np.array_equal(images.test_x.reshape(4, -1), last[b"data"])
    assert list(images.test_y) == list(last[b"labels"])


def test_feedback_points_tags():
    for model in (LeNet(1, 28, 10), ResNet(1, 10, 1, 4)):
        tags = [m.tag for m in model.modules() if isinstance(m, FeedbackPoint)]
        assert "conv" in tags and "default" in tags


def _grads(method_name, options, model_seed=0):
    torch.manual_seed(model_seed)
    model = LeNet(1, 8, 10)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    method = create(method_name, options)
    method.prepare(model, lambda: model(x), 0)
    method.backward(model(x), lambda o: torch.nn.functional.cross_entropy(o, y))
    return model.features[0].weight.grad.clone(), model.head[1].weight.grad.clone()


def test_dfa_conv_grads_differ_from_bp_and_head_only_matches_bp_in_convs():
    conv_bp, head_bp = _grads("bp", {})
    conv_dfa, head_dfa = _grads("dfa", {"tags": ["default", "conv"]})
    assert conv_dfa.abs().sum() > 0 and not torch.allclose(conv_dfa, conv_bp)
    conv_head, _ = _grads("dfa", {"tags": ["default"]})
    assert conv_head.abs().sum() > 0 and not torch.allclose(conv_head, conv_bp)


def test_smoke_training_step_on_digits():
    task = VisionTask()
    hp = resolve(task, scale="smoke", method="dfa", dataset="digits", model="lenet")
    assert list(hp.method_options["tags"]) == ["default", "conv"]
    data = task.load_data("digits", hp, 0, "smoke", "cpu")
    model = task.build_model("lenet", hp, data)
    out = model(data.train[0][:8])
    assert out.shape == (8, 10)
    metrics = task.evaluate(model, data, "val", hp)
    assert abs(metrics["accuracy"] + metrics["top1_error"] / 100 - 1) < 1e-9


def test_hybrid_on_the_digits_resnet_takes_dfa_steps_that_are_not_bp():
    """The committed digits/resnet hybrid runs have BP's test accuracy on seeds 0-2 (results/tuning/
    vision-hybrid-resnet-seeds: seeds 3 and 4 differ). Not a fallback to BP: at the small scale's own
    settings, on the real model and data, every DFA step's conv gradient differs from BP's at the same
    weights and every BP step's equals it."""
    import copy

    task = VisionTask()
    hp = resolve(task, scale="small", method="hybrid", dataset="digits", model="resnet")
    data = task.load_data("digits", hp, 0, "small", "cpu")
    torch.manual_seed(0)
    model = task.build_model("resnet", hp, data)
    reference = copy.deepcopy(model)
    x, y = data.train[0][:32], data.train[1][:32]
    method = create("hybrid", hp.method_options)
    assert method.options.bp_probability == 0.2 and set(method.options.tags) == {"default", "conv"}
    method.prepare(model, lambda: model(x), 0)
    first_conv = next(name for name, p in model.named_parameters() if p.dim() == 4)
    optimizer = torch.optim.Adam(model.parameters(), lr=hp.lr)
    kinds = []
    for _ in range(12):
        took_bp = method.next_is_bp
        # the same weights and BatchNorm statistics (the model also holds the feedback matrix)
        reference.load_state_dict(model.state_dict(), strict=False)
        model.zero_grad(set_to_none=True)
        method.backward(model(x), lambda o: task.loss(o, (x, y), model, hp))
        reference.zero_grad(set_to_none=True)
        task.loss(reference(x), (x, y), reference, hp).backward()
        ours, bp = dict(model.named_parameters())[first_conv].grad, dict(reference.named_parameters())[first_conv].grad
        assert ours.abs().sum() > 0
        assert torch.allclose(ours, bp, atol=1e-6) == took_bp
        kinds.append(took_bp)
        optimizer.step()  # the weights move, as in training
    assert any(kinds) and not all(kinds)  # both kinds of step were checked
