"""The mathematics of BP, DFA and shallow, checked against hand computations on tiny networks."""
from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from dfabench import alignment
from dfabench.engine import FeedbackOutput, FeedbackPoint
from dfabench.engine.feedback import FEEDBACK_PREFIX
from dfabench.methods import create
from tiny_nets import batch, double_precision, tiny_mlp  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("double_precision")


def mse(target):
    return lambda out: ((out - target) ** 2).mean()


def grads_of(model) -> list[torch.Tensor | None]:
    return [None if p.grad is None else p.grad.clone() for p in model.parameters()]


def train_step(model, method_name, x, y, options=None, seed=0):
    method = create(method_name, options)
    method.prepare(model, lambda: model(x), seed=seed)
    model.zero_grad(set_to_none=True)
    method.backward(model(x), mse(y))
    return method


def test_dfa_gradients_match_hand_computation(batch):
    x, y = batch
    model = tiny_mlp()
    train_step(model, "dfa", x, y)
    B = getattr(model, f"{FEEDBACK_PREFIX}default")
    assert B.shape == (2, 4)  # output features x largest point
    W1, b1, W2, b2, W3, b3 = [p.detach() for p in model.parameters()]
    a1 = x @ W1.T + b1
    h1 = torch.tanh(a1)
    a2 = h1 @ W2.T + b2
    h2 = torch.tanh(a2)
    out = h2 @ W3.T + b3
    e = 2 * (out - y) / out.numel()  # dL/d(out) for the mean squared error
    d1 = (e @ B[:, :4]) * (1 - h1 ** 2)  # (B_1 e) * f'(a_1)
    d2 = (e @ B[:, :3]) * (1 - h2 ** 2)
    expected = [d1.T @ x, d1.sum(0), d2.T @ h1, d2.sum(0), e.T @ h2, e.sum(0)]
    for got, want in zip(grads_of(model), expected):
        torch.testing.assert_close(got, want)


def test_output_layer_gets_true_gradient_and_hidden_layers_do_not(batch):
    x, y = batch
    bp_model, dfa_model = tiny_mlp(), tiny_mlp()
    train_step(bp_model, "bp", x, y)
    train_step(dfa_model, "dfa", x, y)
    bp, dfa = grads_of(bp_model), grads_of(dfa_model)
    torch.testing.assert_close(dfa[4], bp[4])
    torch.testing.assert_close(dfa[5], bp[5])
    for i in range(4):  # hidden layers: non-zero, and not BP's gradient
        assert dfa[i].abs().sum() > 0
        assert not torch.allclose(dfa[i], bp[i])


def test_bp_equals_plain_autograd(batch):
    x, y = batch
    plain, routed = tiny_mlp(), tiny_mlp()
    mse(y)(plain(x)).backward()
    train_step(routed, "bp", x, y)
    for got, want in zip(grads_of(routed), grads_of(plain)):
        torch.testing.assert_close(got, want)


def test_shallow_trains_only_above_the_last_point(batch):
    x, y = batch
    bp_model, shallow_model = tiny_mlp(), tiny_mlp()
    train_step(bp_model, "bp", x, y)
    train_step(shallow_model, "shallow", x, y)
    got = grads_of(shallow_model)
    assert all(g is None or float(g.abs().sum()) == 0.0 for g in got[:4])
    torch.testing.assert_close(got[4], grads_of(bp_model)[4])


def test_shallow_keeps_hidden_layers_fixed_under_a_weight_penalty(batch):
    x, y = batch
    model = tiny_mlp()
    method = create("shallow")
    method.prepare(model, lambda: model(x), seed=0)
    penalty = lambda out: mse(y)(out) + 0.1 * sum(p.pow(2).sum() for p in model.parameters())  # noqa: E731
    model.zero_grad(set_to_none=True)
    method.backward(model(x), penalty)
    got = grads_of(model)
    assert got[:4] == [None] * 4
    h2 = model[4](model[3](model[1](model[0](x)))).detach()
    out = model[6](h2)
    e = 2 * (out - y).detach() / out.numel()
    torch.testing.assert_close(got[4], e.T @ h2 + 0.2 * model[6].weight.detach())


def test_cut_blocks_do_not_compute_input_gradients(batch):
    x, y = batch
    model = tiny_mlp()
    seen = []
    for layer in (model[3], model[6]):
        layer.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].requires_grad))
    method = create("dfa")
    method.prepare(model, lambda: model(x), seed=0)
    seen.clear()
    method.backward(model(x), mse(y))
    assert seen == [False, False]


def test_all_blocks_backward_in_one_autograd_call(batch, monkeypatch):
    x, y = batch
    model = tiny_mlp()
    method = create("dfa")
    method.prepare(model, lambda: model(x), seed=0)
    calls = []
    real = torch.autograd.graph._engine_run_backward

    def counting(tensors, *args, **kwargs):  # every autograd engine run, public call or direct
        calls.append(len(tensors))
        return real(tensors, *args, **kwargs)

    monkeypatch.setattr(torch.autograd.graph, "_engine_run_backward", counting)
    monkeypatch.setattr(torch.autograd, "_engine_run_backward", counting)
    method.backward(model(x), mse(y))
    # First the loss alone, which stops at the output leaf (e); then one call carries the output
    # and both points: every block's backward pass in a single autograd call.
    assert calls == [1, 3]


def test_projection_computed_once_per_group(batch, monkeypatch):
    x, y = batch
    model = tiny_mlp()
    method = create("dfa")
    method.prepare(model, lambda: model(x), seed=0)
    B = getattr(model, f"{FEEDBACK_PREFIX}default")
    matmuls = []
    real = torch.Tensor.__matmul__

    def spy(a, b):
        if b is B or (b.data_ptr() == B.data_ptr()):
            matmuls.append(tuple(b.shape))
        return real(a, b)

    monkeypatch.setattr(torch.Tensor, "__matmul__", spy)
    method.backward(model(x), mse(y))
    assert len(matmuls) == 1


def test_feedback_matrix_is_fixed_and_survives_save_and_load(batch):
    x, y = batch
    model = tiny_mlp()
    method = create("dfa")
    method.prepare(model, lambda: model(x), seed=3)
    key = f"{FEEDBACK_PREFIX}default"
    before = model.state_dict()[key].clone()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        method.backward(model(x), mse(y))
        opt.step()
    torch.testing.assert_close(model.state_dict()[key], before)
    assert key not in dict(model.named_parameters())

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    restored = tiny_mlp(seed=9)
    other = create("dfa")
    other.prepare(restored, lambda: restored(x), seed=42)  # a different matrix, until loaded
    assert not torch.allclose(restored.state_dict()[key], before)
    buffer.seek(0)
    restored.load_state_dict(torch.load(buffer))
    torch.testing.assert_close(restored.state_dict()[key], before)
    model.zero_grad(), restored.zero_grad()
    method.backward(model(x), mse(y))
    other.backward(restored(x), mse(y))
    for a, b in zip(grads_of(model), grads_of(restored)):
        torch.testing.assert_close(a, b)


def test_same_seed_same_matrix_other_seed_other_matrix(batch):
    x, _ = batch
    mats = []
    for seed in (0, 0, 1):
        model = tiny_mlp()
        create("dfa").prepare(model, lambda: model(x), seed=seed)
        mats.append(getattr(model, f"{FEEDBACK_PREFIX}default"))
    torch.testing.assert_close(mats[0], mats[1])
    assert not torch.allclose(mats[0], mats[2])


def test_per_layer_scaling_follows_the_survey_rule(batch):
    x, y = batch
    model = tiny_mlp()
    train_step(model, "dfa", x, y, {"distribution": "gaussian", "scaling": "per_layer"})
    B = getattr(model, f"{FEEDBACK_PREFIX}default")
    W1, b1, W2, b2, W3, b3 = [p.detach() for p in model.parameters()]
    h1 = torch.tanh(x @ W1.T + b1)
    h2 = torch.tanh(h1 @ W2.T + b2)
    e = 2 * (h2 @ W3.T + b3 - y) / (7 * 2)
    d2 = (e @ (math.sqrt(4 / 3) * B[:, :3])) * (1 - h2 ** 2)  # B_i = sqrt(l_max / l_i) B[:l_i]
    torch.testing.assert_close(model[3].weight.grad, d2.T @ h1)


def test_global_uniform_matrix_statistics():
    model = nn.Sequential(nn.Linear(3, 512), nn.ReLU(), FeedbackPoint(), nn.Linear(512, 64))
    x = torch.randn(2, 3)
    create("dfa").prepare(model, lambda: model(x), seed=0)
    B = getattr(model, f"{FEEDBACK_PREFIX}default")
    assert B.shape == (64, 512)
    # U[-1, 1) / sqrt(l_max): bounded by 1/sqrt(512), variance 1/(3*512)
    assert float(B.abs().max()) <= 1 / math.sqrt(512)
    assert abs(float(B.var()) - 1 / (3 * 512)) < 0.1 / (3 * 512)


def test_zero_feedback_scale_is_shallow(batch):
    x, y = batch
    model = tiny_mlp()
    train_step(model, "dfa", x, y, {"scale": 0.0})
    assert all(float(g.abs().sum()) == 0.0 for g in grads_of(model)[:4])


class SequenceNet(nn.Module):
    """(batch, time, features) network with a per-token output: batch dims (0, 1)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.hidden = nn.Linear(3, 6)
        self.point = FeedbackPoint()
        self.head = nn.Linear(6, 4)
        self.out = FeedbackOutput(batch_dims=2)

    def forward(self, x):
        return self.out(self.head(self.point(torch.tanh(self.hidden(x)))))


def test_sequence_outputs_project_each_tokens_error():
    x = torch.randn(2, 5, 3)
    target = torch.randint(0, 4, (2, 5))
    model = SequenceNet()
    loss_fn = lambda out: nn.functional.cross_entropy(out.reshape(-1, 4), target.reshape(-1))  # noqa: E731
    method = create("dfa")
    method.prepare(model, lambda: model(x), seed=0)
    model.zero_grad()
    method.backward(model(x), loss_fn)
    B = getattr(model, f"{FEEDBACK_PREFIX}default")
    assert B.shape == (4, 6)
    logits = model.head(torch.tanh(model.hidden(x))).detach().requires_grad_()
    loss_fn(logits).backward()
    e = logits.grad  # (2, 5, 4)
    h = torch.tanh(model.hidden(x)).detach()
    delta = (e @ B) * (1 - h ** 2)  # each token's own error, projected
    torch.testing.assert_close(model.hidden.weight.grad, delta.reshape(-1, 6).T @ x.reshape(-1, 3))


class RenderNet(nn.Module):
    """The error is taken at a marked output that a parameter-free stage consumes (NeRF-like)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.hidden = nn.Linear(3, 5)
        self.point = FeedbackPoint()
        self.head = nn.Linear(5, 2)
        self.raw = FeedbackOutput()

    def forward(self, x):
        raw = self.raw(self.head(self.point(torch.relu(self.hidden(x)))))
        return (raw.softmax(-1) * torch.tensor([1.0, 3.0])).sum(-1)  # parameter-free "rendering"


def test_error_is_taken_at_the_marked_output():
    x, target = torch.randn(6, 3), torch.randn(6)
    model = RenderNet()
    loss_fn = lambda out: ((out - target) ** 2).mean()  # noqa: E731
    method = create("dfa")
    method.prepare(model, lambda: model(x), seed=0)
    model.zero_grad()
    method.backward(model(x), loss_fn)
    B = getattr(model, f"{FEEDBACK_PREFIX}default")
    pre = torch.relu(model.hidden(x)).detach()
    raw = model.head(pre).detach().requires_grad_()
    loss_fn((raw.softmax(-1) * torch.tensor([1.0, 3.0])).sum(-1)).backward()
    e = raw.grad
    torch.testing.assert_close(model.head.weight.grad, e.T @ pre)  # true gradient at the output layer
    a = model.hidden(x).detach()
    delta = (e @ B) * (a > 0)
    torch.testing.assert_close(model.hidden.weight.grad, delta.T @ x)


def test_tags_select_points_and_leave_the_others_to_bp(batch):
    x, y = batch
    model = tiny_mlp()
    model[2].tag = "micro"  # the lower point is an optional one
    train_step(model, "dfa", x, y, {"tags": ["default"]})
    bp_model = tiny_mlp()
    train_step(bp_model, "bp", x, y)
    B = getattr(model, f"{FEEDBACK_PREFIX}default")
    assert B.shape == (2, 3)  # only the active point counts
    # Layer 1 learns by BP *within* the block below the only active point: not BP's gradient,
    # but the DFA signal carried down through layer 2.
    assert model[0].weight.grad.abs().sum() > 0
    assert not torch.allclose(model[0].weight.grad, bp_model[0].weight.grad)


def test_alignment_is_one_for_bp_zero_for_shallow_and_partial_for_dfa(batch):
    x, y = batch
    reports = {}
    for name in ("bp", "dfa", "shallow"):
        model = tiny_mlp()
        method = create(name)
        method.prepare(model, lambda: model(x), seed=0)
        reports[name] = alignment.measure(model, method, lambda: model(x), mse(y))
    for point in reports["bp"]["points"].values():
        assert point["grad_cos"] == pytest.approx(1.0)
    for point in reports["shallow"]["points"].values():
        assert point["grad_cos"] == 0.0
    dfa_points = list(reports["dfa"]["points"].values())
    assert len(dfa_points) == 2
    for point in dfa_points:
        assert -1.0 < point["grad_cos"] < 1.0 and point["grad_cos"] != 0.0
        assert -1.0 < point["signal_cos"] < 1.0


def test_alignment_signal_cosine_matches_hand_computation(batch):
    x, y = batch
    model = tiny_mlp()
    method = create("dfa")
    method.prepare(model, lambda: model(x), seed=0)
    report = alignment.measure(model, method, lambda: model(x), mse(y))
    B = getattr(model, f"{FEEDBACK_PREFIX}default")
    h1 = model[1](model[0](x))
    h2 = model[4](model[3](h1))
    out = model[6](h2)
    e, true_h2 = torch.autograd.grad(mse(y)(out), [out, h2])
    expected = nn.functional.cosine_similarity((e @ B[:, :3]).reshape(-1), true_h2.reshape(-1), dim=0)
    assert report["points"]["5"]["signal_cos"] == pytest.approx(float(expected))


def test_alignment_does_not_change_the_model(batch):
    x, y = batch
    model = tiny_mlp()
    method = create("dfa")
    method.prepare(model, lambda: model(x), seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    alignment.measure(model, method, lambda: model(x), mse(y))
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_a_cut_marker_stops_dfa_and_shallow_but_not_bp(batch):
    from dfabench.engine import FeedbackCut

    x, target = batch
    grads = {}
    for name in ("bp", "dfa", "shallow"):
        torch.manual_seed(0)
        embed = nn.Linear(5, 5)
        model = nn.Sequential(embed, FeedbackCut(), nn.Linear(5, 4), nn.Tanh(), FeedbackPoint(), nn.Linear(4, 2))
        method = create(name)
        method.prepare(model, lambda: model(x), seed=0)
        method.backward(model(x), lambda out: ((out - target) ** 2).mean())
        grads[name] = embed.weight.grad
    assert grads["bp"] is not None and torch.count_nonzero(grads["bp"]) > 0
    assert grads["dfa"] is None and grads["shallow"] is None  # nothing reaches below the cut
