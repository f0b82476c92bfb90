"""The authors' DFA NeRF checkpoints read into the suite's model (tasks/nerf/authors_checkpoints.py):
the mapped model computes what their DFAFlexibleNeRFModel computes, written here from their code."""
from __future__ import annotations

import torch

from dfabench.tasks.nerf.authors_checkpoints import DEPTH, DIR_FREQS, POS_FREQS, WIDTH, theirs_to_ours
from dfabench.tasks.nerf.models import NeRFMLP


def their_encoding(x, freqs):
    """nerf_helpers.positional_encoding: x, then sin and cos band by band (log-sampled 2^k)."""
    parts = [x]
    for k in range(freqs):
        parts += [torch.sin(x * 2.0 ** k), torch.cos(x * 2.0 ** k)]
    return torch.cat(parts, -1)


def their_forward(state, xyz, view):
    """DFAFlexibleNeRFModel.forward with every DFA layer the identity (4 layers, no skip)."""
    linear = lambda name, x: x @ state[f"{name}.weight"].T + state[f"{name}.bias"]  # noqa: E731
    x = torch.relu(linear("layer1", xyz))
    for i in range(DEPTH - 1):
        x = torch.relu(linear(f"layers_xyz.{i}", x))
    feat = torch.relu(linear("fc_feat", x))
    alpha = linear("fc_alpha", x)
    y = torch.relu(linear("layers_dir.0", torch.cat([feat, view], -1)))
    return torch.cat([linear("fc_rgb", y), alpha], -1)


def test_a_checkpoint_of_theirs_computes_the_same_in_our_model():
    g = torch.Generator().manual_seed(0)
    pos, view = 3 + 6 * POS_FREQS, 3 + 6 * DIR_FREQS
    shapes = {"layer1": (WIDTH, pos), **{f"layers_xyz.{i}": (WIDTH, WIDTH) for i in range(DEPTH - 1)},
              "fc_alpha": (1, WIDTH), "fc_feat": (WIDTH, WIDTH), "layers_dir.0": (WIDTH // 2, WIDTH + view),
              "fc_rgb": (3, WIDTH // 2)}
    state = {}
    for name, shape in shapes.items():
        state[f"{name}.weight"] = torch.randn(shape, generator=g) / shape[1] ** 0.5
        state[f"{name}.bias"] = 0.1 * torch.randn(shape[0], generator=g)
    ours = NeRFMLP(DEPTH, WIDTH, POS_FREQS, DIR_FREQS, None, "coarse", feature_relu=True)
    ours.load_state_dict(theirs_to_ours(state))
    xyz, dirs = torch.randn(5, 7, 3, generator=g), torch.nn.functional.normalize(torch.randn(5, 3, generator=g), dim=-1)
    expected = their_forward(state, their_encoding(xyz, POS_FREQS),
                             their_encoding(dirs, DIR_FREQS)[:, None].expand(5, 7, -1))
    torch.testing.assert_close(ours(xyz, dirs), expected, atol=1e-5, rtol=1e-5)
    # without the permutation of the encoding's columns the outputs differ: the mapping is not vacuous
    plain = dict(theirs_to_ours(state), **{"layers.0.weight": state["layer1.weight"]})
    ours.load_state_dict(plain)
    assert not torch.allclose(ours(xyz, dirs), expected, atol=1e-3)


def test_the_feature_option_adds_one_point_and_leaves_the_default_model_as_it_was():
    torch.manual_seed(0)
    default = NeRFMLP(2, 16, 2, 1, None, "coarse")
    torch.manual_seed(0)
    authors = NeRFMLP(2, 16, 2, 1, None, "coarse", feature_relu=True)
    assert default.feature_point is None and authors.feature_point is not None
    for (name, a), (_, b) in zip(default.state_dict().items(), authors.state_dict().items()):
        assert torch.equal(a, b), name  # the same parameters drawn in the same order
    xyz, dirs = torch.randn(3, 4, 3), torch.randn(3, 3)
    assert not torch.allclose(default(xyz, dirs), authors(xyz, dirs))  # the ReLU acts


def test_the_committed_small_nerf_records_keep_their_ids():
    """feature_relu is left out of a run's id unless set: today's plan still names the committed runs."""
    import json
    from pathlib import Path

    from dfabench.harness.plan import plan

    runs = Path(__file__).resolve().parents[1] / "results" / "small" / "runs"
    committed = {r["id"] for r in map(json.loads, (p.read_text() for p in runs.glob("*.json"))) if r["domain"] == "nerf"}
    planned, _ = plan(["nerf/slab/nerf", "nerf/blobs/nerf"], ["bp", "dfa"], "small", [0, 1], check_data=False)
    assert {r.id for r in planned} <= committed and len(planned) == 8
    paper, _ = plan(["nerf/slab/nerf"], ["dfa"], "paper", [0], check_data=False)
    assert paper[0].hparams.feature_relu and paper[0].hparams.schedule == "exponential"
    assert paper[0].hparams.lr * paper[0].hparams.gamma == 1e-5  # decayed to 1e-5 over training, as the authors
