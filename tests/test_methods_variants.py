"""The mathematics of fa, sign-symmetry, drtp and the DFA feedback variants, against hand computations."""
from __future__ import annotations

import copy
import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dfabench import alignment
from dfabench.engine import FeedbackPoint
from dfabench.engine.feedback import FEEDBACK_PREFIX
from dfabench.methods import create
from dfabench.methods.drtp import DRTPError
from dfabench.methods.fa import FA_BUFFER, FAError
from tiny_nets import batch, double_precision, tiny_mlp  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("double_precision")


def mse(target):
    return lambda out: ((out - target) ** 2).mean()


def step(model, name, x, loss_fn, options=None, seed=0):
    method = create(name, options)
    method.prepare(model, lambda: model(x), seed=seed)
    model.zero_grad(set_to_none=True)
    method.backward(model(x), loss_fn)
    return method


def forward_by_hand(model, x):
    W1, b1, W2, b2, W3, b3 = [p.detach() for p in model.parameters()]
    h1 = torch.tanh(x @ W1.T + b1)
    h2 = torch.tanh(h1 @ W2.T + b2)
    return (W1, W2, W3), h1, h2, h2 @ W3.T + b3


@pytest.mark.parametrize("name", ["fa", "sign-symmetry"])
def test_fa_gradients_match_hand_computation(batch, name):
    x, y = batch
    model = tiny_mlp()
    step(model, name, x, mse(y))
    (W1, W2, W3), h1, h2, out = forward_by_hand(model, x)
    if name == "fa":
        B2, B3 = getattr(model[3], FA_BUFFER), getattr(model[6], FA_BUFFER)
        assert B3.shape == W3.shape and float(B3.abs().max()) <= 1 / math.sqrt(3)
    else:
        B2, B3 = torch.sign(W2) / 2, torch.sign(W3) / math.sqrt(3)
    e = 2 * (out - y) / out.numel()
    d2 = (e @ B3) * (1 - h2 ** 2)  # delta B, not delta W, layer by layer
    d1 = (d2 @ B2) * (1 - h1 ** 2)
    expected = [d1.T @ x, d1.sum(0), d2.T @ h1, d2.sum(0), e.T @ h2, e.sum(0)]
    got = [p.grad for p in model.parameters()]
    for g, want in zip(got, expected):
        torch.testing.assert_close(g, want)
    bp = tiny_mlp()
    mse(y)(bp(x)).backward()
    assert not torch.allclose(got[0], bp[0].weight.grad)  # hidden layers differ from BP
    torch.testing.assert_close(got[4], bp[6].weight.grad)  # the output layer is exact


def test_fa_conv2d_matches_hand_computation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 2, 3, stride=2, padding=1),
                          nn.Flatten())
    x = torch.randn(2, 2, 6, 6)
    step(model, "fa", x, lambda out: out.pow(2).sum())
    conv1, conv2 = model[0], model[2]
    a1 = F.conv2d(x, conv1.weight, conv1.bias, padding=1)
    h1 = a1.relu().detach().requires_grad_(True)
    out = F.conv2d(h1, conv2.weight, conv2.bias, stride=2, padding=1)
    g_out = 2 * out.detach()
    # the input gradient through conv2 uses B (a transposed convolution with B in place of W)
    g_h1 = torch.nn.grad.conv2d_input(h1.shape, getattr(conv2, FA_BUFFER), g_out, stride=2, padding=1)
    g_a1 = g_h1 * (a1 > 0)
    torch.testing.assert_close(conv1.weight.grad, torch.nn.grad.conv2d_weight(x, conv1.weight.shape, g_a1, padding=1))
    torch.testing.assert_close(conv2.weight.grad, torch.nn.grad.conv2d_weight(h1, conv2.weight.shape, g_out,
                                                                               stride=2, padding=1))


def test_fa_matrices_are_saved_fixed_and_released(batch):
    x, y = batch
    model = tiny_mlp()
    method = step(model, "fa", x, mse(y), seed=3)
    key = f"0.{FA_BUFFER}"
    before = model.state_dict()[key].clone()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    torch.testing.assert_close(model.state_dict()[key], before)
    copied = copy.deepcopy(model)  # the harness keeps the best state this way; the copy keeps FA
    assert copied[0].forward.module is copied[0]
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    other = tiny_mlp()
    create("fa").prepare(other, lambda: other(x), seed=4)
    buffer.seek(0)
    other.load_state_dict(torch.load(buffer))
    torch.testing.assert_close(other.state_dict()[key], before)
    method.release()
    assert "forward" not in model[0].__dict__


@pytest.mark.parametrize("layer", [nn.MultiheadAttention(4, 1), nn.LSTM(4, 4), nn.Bilinear(4, 4, 4)])
def test_fa_refuses_layers_it_cannot_handle(layer):
    model = nn.Sequential(nn.Linear(4, 4))
    model.add_module("other", layer)
    with pytest.raises(FAError, match="does not apply"):
        create("fa").prepare(model, lambda: None, seed=0)


def test_fa_accepts_local_parameters():
    model = nn.Sequential(nn.Embedding(5, 4), nn.LayerNorm(4), nn.Linear(4, 3), nn.PReLU(), nn.Linear(3, 2))
    x = torch.randint(0, 5, (6,))
    step(model, "fa", x, lambda out: out.pow(2).mean())
    assert all(p.grad is not None for p in model.parameters())


def cross_entropy_setup(seed=2):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), FeedbackPoint(), nn.Linear(4, 3), nn.Tanh(), FeedbackPoint(),
                          nn.Linear(3, 3))
    x = torch.randn(6, 5)
    labels = torch.tensor([0, 2, 1, 1, 0, 2])
    return model, x, labels


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_drtp_projects_the_target_not_the_error(reduction):
    model, x, labels = cross_entropy_setup()
    step(model, "drtp", x, lambda out: F.cross_entropy(out, labels, reduction=reduction))
    B = getattr(model, f"{FEEDBACK_PREFIX}default")
    (_, _, _), h1, h2, out = forward_by_hand(model, x)
    n = len(labels) if reduction == "mean" else 1
    target = F.one_hot(labels, 3).double() / n
    d1 = (-target @ B[:, :4]) * (1 - h1 ** 2)
    d2 = (-target @ B[:, :3]) * (1 - h2 ** 2)
    e = (torch.softmax(out, 1) - F.one_hot(labels, 3)) / n
    expected = [d1.T @ x, d1.sum(0), d2.T @ h1, d2.sum(0), e.T @ h2, e.sum(0)]
    for g, want in zip([p.grad for p in model.parameters()], expected):
        torch.testing.assert_close(g, want)


def test_drtp_refuses_losses_without_a_one_hot_target(batch):
    x, y = batch
    with pytest.raises(DRTPError, match="softmax cross-entropy"):
        step(tiny_mlp(), "drtp", x, mse(y))
    model, x, labels = cross_entropy_setup()
    with pytest.raises(DRTPError):
        step(model, "drtp", x, lambda out: F.cross_entropy(out, labels, label_smoothing=0.1))


def test_dfa_sign_is_binary_and_scaled(batch):
    x, y = batch
    model = tiny_mlp()
    step(model, "dfa-sign", x, mse(y))
    B = getattr(model, f"{FEEDBACK_PREFIX}default")
    torch.testing.assert_close(B.abs(), torch.full_like(B, 1 / math.sqrt(4)))  # +-1 / sqrt(l_max)
    assert (B > 0).any() and (B < 0).any()


def test_dfa_sparse_density_and_single_connection():
    model = nn.Sequential(nn.Linear(3, 400), nn.ReLU(), FeedbackPoint(), nn.Linear(400, 10))
    x = torch.randn(2, 3)
    create("dfa-sparse").prepare(model, lambda: model(x), seed=0)
    B = getattr(model, f"{FEEDBACK_PREFIX}default")
    assert abs(float((B != 0).double().mean()) - 0.1) < 0.02
    dense = nn.Sequential(nn.Linear(3, 400), nn.ReLU(), FeedbackPoint(), nn.Linear(400, 10))
    create("dfa").prepare(dense, lambda: dense(x), seed=0)
    D = getattr(dense, f"{FEEDBACK_PREFIX}default")
    assert abs(float(B.pow(2).sum() / D.pow(2).sum()) - 1) < 0.15  # rescaled: same expected norm
    single = nn.Sequential(nn.Linear(3, 400), nn.ReLU(), FeedbackPoint(), nn.Linear(400, 10))
    create("dfa-sparse", {"single_connection": True}).prepare(single, lambda: single(x), seed=0)
    S = getattr(single, f"{FEEDBACK_PREFIX}default")
    assert ((S != 0).sum(0) == 1).all()  # each hidden unit hears exactly one output


def test_dfa_sparse_gradient_uses_the_sparse_matrix(batch):
    x, y = batch
    model = tiny_mlp()
    step(model, "dfa-sparse", x, mse(y), {"density": 0.5})
    B = getattr(model, f"{FEEDBACK_PREFIX}default")
    (_, _, _), h1, h2, out = forward_by_hand(model, x)
    e = 2 * (out - y) / out.numel()
    torch.testing.assert_close(model[3].weight.grad, ((e @ B[:, :3]) * (1 - h2 ** 2)).T @ h1)


@pytest.mark.parametrize("scaling", ["global", "per_layer"])
def test_dfa_per_point_matrices_are_independent(batch, scaling):
    x, y = batch
    model = tiny_mlp()
    step(model, "dfa", x, mse(y), {"per_point": True, "scaling": scaling})
    B0, B1 = getattr(model, f"{FEEDBACK_PREFIX}default_0"), getattr(model, f"{FEEDBACK_PREFIX}default_1")
    assert B0.shape == (2, 4) and B1.shape == (2, 3)
    assert not torch.allclose(B0[:, :3], B1)  # not a slice of one matrix
    assert f"{FEEDBACK_PREFIX}default" not in model.state_dict()
    (_, _, _), h1, h2, out = forward_by_hand(model, x)
    e = 2 * (out - y) / out.numel()
    d1, d2 = (e @ B0) * (1 - h1 ** 2), (e @ B1) * (1 - h2 ** 2)
    torch.testing.assert_close(model[0].weight.grad, d1.T @ x)
    torch.testing.assert_close(model[3].weight.grad, d2.T @ h1)


@pytest.mark.parametrize("name", ["fa", "sign-symmetry", "drtp", "dfa-sparse", "dfa-sign"])
def test_alignment_is_measured_for_every_new_method(name):
    model, x, labels = cross_entropy_setup()
    method = create(name)
    method.prepare(model, lambda: model(x), seed=0)
    loss_fn = lambda out: F.cross_entropy(out, labels)  # noqa: E731
    before = [p.detach().clone() for p in model.parameters()]
    report = alignment.measure(model, method, lambda: model(x), loss_fn)
    assert len(report["points"]) == 2
    cosines = [p["grad_cos"] for p in report["points"].values()]
    assert all(-1 - 1e-9 <= c <= 1 + 1e-9 for c in cosines) and any(abs(c) < 0.999 for c in cosines)  # not BP
    if name in ("drtp", "dfa-sparse", "dfa-sign"):
        assert all("signal_cos" in p for p in report["points"].values())
    for a, b in zip(before, model.parameters()):
        torch.testing.assert_close(a, b)


def test_drtp_recovers_the_target_when_a_prediction_is_float32_exact():
    # a saturated row has exactly zero error in float32; it still counts in the mean's N
    from dfabench.methods.drtp import recover_target

    torch.manual_seed(0)
    logits = torch.randn(16, 4, dtype=torch.float32) * 3
    logits[0] = torch.tensor([200.0, 0, 0, 0])
    labels = torch.randint(0, 4, (16,))
    labels[0] = 0
    logits.requires_grad_(True)
    F.cross_entropy(logits, labels).backward()
    assert float(logits.grad[0].abs().sum()) == 0.0
    target = recover_target(logits.detach(), logits.grad, 1, 1e-3)
    torch.testing.assert_close(target, F.one_hot(labels, 4).float() / 16)
    logits.grad = None
    F.cross_entropy(logits, torch.where(torch.arange(16) < 3, -100, labels)).backward()  # ignore_index rows
    target = recover_target(logits.detach(), logits.grad, 1, 1e-3)
    torch.testing.assert_close(target[3:], F.one_hot(labels[3:], 4).float() / 13)
    assert float(target[:3].abs().sum()) == 0.0


def test_drtp_recovers_the_target_when_the_mean_spans_masked_and_saturated_rows():
    from dfabench.methods.drtp import recover_target

    # a node classifier's loss: the mean over 10 training rows of 50; row 3 is saturated in float32
    z = torch.randn(50, 7, dtype=torch.float32)
    z[3] = torch.tensor([200.0, 0, 0, 0, 0, 0, 0])
    z.requires_grad_(True)
    y = torch.randint(1, 7, (50,))
    y[3] = 0
    train = torch.zeros(50, dtype=torch.bool)
    train[:10] = True
    F.cross_entropy(z[train], y[train]).backward()
    target = recover_target(z.detach(), z.grad, 1, 1e-3)
    expected = F.one_hot(y, 7).float() / 10
    expected[~train] = 0
    expected[3] = 0  # no error left, no signal: it is predicted exactly
    assert torch.allclose(target, expected)


def _grads(model):
    return [p.grad.clone() for p in model.parameters()]


def _reference_grads(model, name, x, loss_fn):
    reference = copy.deepcopy(model)
    step(reference, name, x, loss_fn)
    return _grads(reference)


@pytest.mark.parametrize("probability, same_as", [(1.0, "bp"), (0.0, "dfa")])
def test_hybrid_at_the_extremes_is_bp_or_dfa(batch, probability, same_as):
    x, y = batch
    model = tiny_mlp()
    expected = _reference_grads(model, same_as, x, mse(y))
    method = create("hybrid", {"bp_probability": probability})
    method.prepare(model, lambda: model(x), seed=0)
    for _ in range(3):  # every step, not just the first
        model.zero_grad(set_to_none=True)
        method.backward(model(x), mse(y))
        for got, want in zip(_grads(model), expected):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_hybrid_steps_are_bp_or_dfa_in_a_seeded_proportion(batch):
    x, y = batch
    model = tiny_mlp()
    bp = _reference_grads(model, "bp", x, mse(y))

    def kinds(seed, steps=200):
        dfa = copy.deepcopy(model)
        step(dfa, "dfa", x, mse(y), seed=seed)  # the hybrid's DFA steps use the run seed's matrix
        dfa = _grads(dfa)
        assert not torch.allclose(bp[0], dfa[0])  # the two kinds of step are told apart by the first layer
        method = create("hybrid", {"bp_probability": 0.3})
        method.prepare(model, lambda: model(x), seed=seed)
        seen = []
        for _ in range(steps):  # weights never change here, so each step's update is BP's or DFA's
            model.zero_grad(set_to_none=True)
            method.backward(model(x), mse(y))
            got = _grads(model)
            is_bp = all(torch.allclose(g, w, rtol=0, atol=1e-12) for g, w in zip(got, bp))
            is_dfa = all(torch.allclose(g, w, rtol=0, atol=1e-12) for g, w in zip(got, dfa))
            assert is_bp != is_dfa
            seen.append("bp" if is_bp else "dfa")
        assert (method.steps_bp, method.steps_dfa) == (seen.count("bp"), seen.count("dfa"))
        return seen

    first = kinds(seed=0)
    assert kinds(seed=0) == first  # reproducible from the run seed
    assert kinds(seed=1) != first
    assert 0.2 < first.count("bp") / len(first) < 0.4


def test_hybrid_alignment_measures_its_dfa_step(batch):
    x, y = batch
    model = tiny_mlp()
    hybrid = create("hybrid", {"bp_probability": 1.0})  # every training step BP ...
    hybrid.prepare(model, lambda: model(x), seed=0)
    dfa = create("dfa")
    other = copy.deepcopy(model)
    dfa.prepare(other, lambda: other(x), seed=0)
    got = alignment.measure(model, hybrid, lambda: model(x), mse(y))
    want = alignment.measure(other, dfa, lambda: other(x), mse(y))
    assert got["mean_grad_cos"] == pytest.approx(want["mean_grad_cos"], abs=1e-12)  # ... probes see DFA
    assert hybrid.router.mode == "identity"  # and the probe left the next step's mode alone
