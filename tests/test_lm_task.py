"""The lm task: feedback points where the paper puts them, and DFA differs from BP on the model."""
import torch

from dfabench.engine.points import FeedbackOutput, FeedbackPoint
from dfabench.methods import create
from dfabench.tasks.lm.models import TransformerLM


def _model():
    torch.manual_seed(0)
    return TransformerLM(50, 8, 2, 16, 2, 32, 0.0)


def test_points_macro_and_micro():
    model = _model()
    tags = [m.tag for m in model.modules() if isinstance(m, FeedbackPoint)]
    assert tags.count("default") == 2 and tags.count("micro") == 4
    outputs = [m for m in model.modules() if isinstance(m, FeedbackOutput)]
    assert len(outputs) == 1 and outputs[0].batch_dims == 2
    assert model(torch.randint(0, 50, (3, 8))).shape == (3, 8, 50)


def _grads(method_name, options):
    model = _model()
    x, y = torch.randint(0, 50, (4, 8)), torch.randint(0, 50, (4, 8))
    method = create(method_name, options)
    method.prepare(model, lambda: model(x), 0)
    out = model(x)
    method.backward(out, lambda o: torch.nn.functional.cross_entropy(o.flatten(0, 1), y.flatten()))
    return model.lm.transformer.h[0].mlp.c_fc.weight.grad.clone()


def test_dfa_hidden_gradients_nonzero_and_differ_from_bp():
    bp = _grads("bp", {})
    for options in ({}, {"tags": ["default", "micro"]}):
        dfa = _grads("dfa", options)
        assert dfa.abs().sum() > 0
        assert not torch.allclose(dfa, bp, atol=1e-6)
