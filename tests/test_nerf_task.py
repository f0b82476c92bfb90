"""The nerf task: loaders on tiny Blender/LLFF scenes, procedural scenes, feedback points, DFA gradients."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dfabench.engine.points import FeedbackOutput, FeedbackPoint
from dfabench.methods import create
from dfabench.tasks.nerf.data import load_blender, load_llff, orbit_pose, write_procedural
from dfabench.tasks.nerf.models import NeRF
from dfabench.tasks.nerf.task import comparison_image, comparison_images
from records import valid_record


def test_blender_layout_round_trip(tmp_path):
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0] = 255; rgba[..., 3] = 255
    rgba[0, 0, 3] = 0  # transparent pixel -> white after compositing
    for split in ("train", "val", "test"):
        (tmp_path / split).mkdir()
        Image.fromarray(rgba, "RGBA").save(tmp_path / split / "r_0.png")
        meta = {"camera_angle_x": 0.7, "frames": [{"file_path": f"./{split}/r_0",
                                                    "transform_matrix": orbit_pose(0.3, 0.4, 4.0).tolist()}]}
        (tmp_path / f"transforms_{split}.json").write_text(json.dumps(meta))
    v = load_blender(tmp_path, "train")
    assert v.rays.shape == (1, 24, 6) and v.hw == (4, 6)
    assert torch.allclose(v.rgb[0, 0], torch.ones(3))
    assert torch.allclose(v.rgb[0, 1], torch.tensor([1.0, 0, 0]))
    # the central rays point at the origin (the camera looks at it)
    o, d = v.rays[0, :, :3], v.rays[0, :, 3:]
    assert torch.allclose(o[0], torch.tensor(orbit_pose(0.3, 0.4, 4.0)[:3, 3], dtype=torch.float32))
    centre = d.mean(0) / d.mean(0).norm()
    assert torch.allclose(centre, -o[0] / o[0].norm(), atol=1e-2)


def test_llff_layout_ndc(tmp_path):
    (tmp_path / "images").mkdir()
    n, h, w = 9, 4, 6
    rows = []
    for k in range(n):
        Image.fromarray(np.full((h, w, 3), 20 * k, np.uint8)).save(tmp_path / "images" / f"img_{k:02d}.png")
        # LLFF: [down, right, back] columns, translation, then (h, w, focal); then near/far bounds
        pose = np.concatenate([np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1.0]]), [[0.01 * k], [0], [0]],
                               [[h], [w], [5.0]]], 1)
        rows.append(np.concatenate([pose.reshape(-1), [1.0, 10.0]]))
    np.save(tmp_path / "poses_bounds.npy", np.array(rows))
    splits = load_llff(tmp_path)
    # test: every 8th view (0, 8); validation: the one between (4), out of training; no view in two splits
    assert [splits[s].rays.shape[0] for s in ("train", "val", "test")] == [6, 1, 2]
    assert torch.allclose(splits["test"].rgb[1, 0], torch.full((3,), 160 / 255))
    assert torch.allclose(splits["val"].rgb[0, 0], torch.full((3,), 80 / 255))
    # NDC: origins on the near plane z = -1, ray ends at z = +1 within [-1, 1]^2 for in-frame pixels
    o, d = splits["train"].rays[0, :, :3], splits["train"].rays[0, :, 3:]
    assert torch.allclose(o[:, 2], torch.full((h * w,), -1.0), atol=1e-5)
    end = o + d
    assert end[:, :2].abs().max() <= 1.0 + 1e-4 and torch.allclose(end[:, 2], torch.ones(h * w), atol=1e-4)


def test_procedural_scenes_deterministic_and_distinct(tmp_path):
    a = load_blender(write_procedural(tmp_path / "a", "blobs", 12, seed=3, n_train=2, n_val=1, n_test=1), "train")
    b = load_blender(write_procedural(tmp_path / "b", "blobs", 12, seed=3, n_train=2, n_val=1, n_test=1), "train")
    c = load_blender(write_procedural(tmp_path / "c", "slab", 12, seed=3, n_train=2, n_val=1, n_test=1), "train")
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.rays, b.rays)
    assert not torch.allclose(a.rgb, c.rgb)
    assert (a.rgb < 0.9).any() and (a.rgb > 0.99).any()  # an object on a white background


def _model():
    torch.manual_seed(0)
    return NeRF(depth=3, width=16, pos_freqs=3, dir_freqs=2, skip=1, n_coarse=6, n_fine=5)


def test_validation_and_test_views_do_not_share_poses(tmp_path):
    """Early stopping picks the checkpoint on validation views: they must not be the test views."""
    root = write_procedural(tmp_path, "blobs", 8, seed=0, n_train=3, n_val=4, n_test=4)
    poses = {split: [np.array(f["transform_matrix"]) for f in json.loads((root / f"transforms_{split}.json").read_text())["frames"]]
             for split in ("train", "val", "test")}
    for a in poses["val"]:
        assert all(np.abs(a - b).max() > 0.1 for b in poses["test"] + poses["train"])


def test_inactive_units_counts_relus_silent_on_every_example():
    from torch import nn

    from dfabench.alignment import inactive_units

    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), FeedbackPoint(), nn.Linear(4, 1))
    with torch.no_grad():
        net[0].weight.fill_(0.0)
        net[0].bias.copy_(torch.tensor([1.0, -1.0, 1.0, 1.0]))  # unit 1 is dead on every input
        net[0].weight[2, 0] = 5.0  # unit 2 is silent for x0 < -0.2 only: alive on the batch
    x = torch.tensor([[-1.0, 0, 0], [1.0, 0, 0]])
    net.train()
    assert inactive_units(net, lambda: net(x)) == {"2": 0.25}
    assert net.training  # mode restored


def test_feedback_points_after_every_hidden_relu():
    m = _model()
    groups = [p.group for p in m.modules() if isinstance(p, FeedbackPoint)]
    assert groups.count("coarse") == 4 and groups.count("fine") == 4  # 3 trunk ReLUs + the view ReLU
    outs = [o for o in m.modules() if isinstance(o, FeedbackOutput)]
    assert sorted(o.group for o in outs) == ["coarse", "fine"] and all(o.batch_dims == 2 for o in outs)
    coarse, fine = m(torch.randn(7, 6))
    assert coarse.shape == fine.shape == (7, 3)


def _grads(method_name):
    m = _model()
    m.eval()  # deterministic sampling, so BP and DFA see the same forward
    rays = torch.cat([torch.tensor([[0, 0, 4.0]]).repeat(8, 1), torch.randn(8, 3) * 0.1 + torch.tensor([0, 0, -1.0])], 1)
    target = torch.rand(8, 3)
    method = create(method_name, {})
    method.prepare(m, lambda: m(rays), 0)
    loss_fn = lambda out: ((out[0] - target) ** 2).mean() + ((out[1] - target) ** 2).mean()
    method.backward(m(rays), loss_fn)
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in m.named_parameters()}


def test_dfa_hidden_gradients_nonzero_and_differ_from_bp():
    bp, dfa, shallow = _grads("bp"), _grads("dfa"), _grads("shallow")
    for net in ("coarse", "fine"):
        first = f"{net}.layers.0.weight"
        assert dfa[first].abs().sum() > 0 and bp[first].abs().sum() > 0
        assert not torch.allclose(dfa[first], bp[first])
        assert shallow[first].abs().sum() == 0
        # layers above the last point get their true gradient
        assert torch.allclose(dfa[f"{net}.rgb.weight"], bp[f"{net}.rgb.weight"], atol=1e-6)


def test_comparison_image(tmp_path):
    dirs = {}
    for k, m in enumerate(("bp", "dfa", "shallow")):
        (tmp_path / m / "renders").mkdir(parents=True)
        Image.fromarray(np.full((5, 4, 3), 50 * k, np.uint8)).save(tmp_path / m / "renders" / "test_000.png")
        Image.fromarray(np.full((5, 4, 3), 255, np.uint8)).save(tmp_path / m / "renders" / "gt_000.png")
        dirs[m] = tmp_path / m
    out = comparison_image(dirs, tmp_path / "cmp.png")
    img = np.asarray(Image.open(out))
    assert img.shape == (5, 16, 3) and img[0, 0, 0] == 255 and img[0, 4, 0] == 0 and img[0, 8, 0] == 50


def test_comparison_images_from_records(tmp_path):
    """One side-by-side per (dataset, model, seed), built from the runs' renders under artifacts/<id>/."""
    (tmp_path / "runs").mkdir()
    for k, m in enumerate(("shallow", "bp")):  # written out of order: the image still reads gt|bp|shallow
        renders = tmp_path / "artifacts" / m / "renders"
        renders.mkdir(parents=True)
        Image.fromarray(np.full((3, 2, 3), 100 * k, np.uint8)).save(renders / "test_000.png")
        Image.fromarray(np.full((3, 2, 3), 255, np.uint8)).save(renders / "gt_000.png")
        record = valid_record(m, domain="nerf", dataset="blobs", model="nerf", seed=1, method=m,
                              extras={"renders_dir": "/elsewhere/on/the/machine/that/ran/it"})
        (tmp_path / "runs" / f"{m}.json").write_text(json.dumps(record))
    (tmp_path / "runs" / "other.json").write_text(json.dumps(valid_record("other", domain="mlp")))
    outs = comparison_images(tmp_path)
    assert outs == [tmp_path / "nerf" / "blobs_nerf_seed1.png"]
    img = np.asarray(Image.open(outs[0]))
    assert img.shape == (3, 6, 3) and img[0, 0, 0] == 255 and img[0, 2, 0] == 100 and img[0, 4, 0] == 0


def test_smoke_run_end_to_end(tmp_path):
    from dfabench.task import all_tasks

    task = all_tasks()["nerf"]
    assert [c for c in task.cells() if c[0] not in task.explicit_datasets and c[1] not in task.explicit_models] == [
        ("blobs", "nerf"), ("slab", "nerf")]  # nerf-authors-feature runs only when named
    hp = task.HParams(resolution=12, depth=2, width=16, skip=1, pos_freqs=2, dir_freqs=1, n_coarse=6, n_fine=4,
                      batch_size=64, max_eval_views=1, cache_dir=str(tmp_path))
    data = task.load_data("blobs", hp, 0, "smoke", torch.device("cpu"))
    model = task.build_model("nerf", hp, data)
    batch = next(iter(task.train_batches(data, hp, torch.Generator().manual_seed(0))))
    loss = task.loss(task.forward(model, batch), batch, model, hp)
    loss.backward()
    model.eval()
    with torch.no_grad():
        metrics = task.evaluate(model, data, "test", hp)
        extras = task.extras(model, data, hp, tmp_path / "run")
    assert set(metrics) == {"psnr", "ssim"} and 0 < metrics["psnr"] < 60
    assert len(extras["test_psnr_per_view"]) == 1 and extras["mean_colour_baseline_psnr"] > 0
    assert len(extras["dead_units"]) == 2 * (hp.depth + 1) and all(0 <= v <= 1 for v in extras["dead_units"].values())
    assert (tmp_path / "run" / "renders" / "test_000.png").exists()


def test_concurrent_runs_render_a_procedural_scene_once(tmp_path):
    """Several workers on one machine write the same cached scene at once; every one must succeed."""
    import subprocess
    import sys

    code = ("from dfabench.tasks.nerf.data import write_procedural; "
            f"write_procedural({str(tmp_path)!r}, 'blobs', 8, 0, n_train=3, n_val=1, n_test=1)")
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(4)]
    assert [p.wait() for p in procs] == [0, 0, 0, 0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blobs_8_s0_v2"]
    assert len(list((tmp_path / "blobs_8_s0_v2" / "train").glob("*.png"))) == 3


def test_an_epoch_is_steps_per_epoch_batches_of_fresh_passes(tmp_path):
    """steps_per_epoch longer than one pass over the training rays: the rays are drawn pass after
    pass, each pass a permutation (every ray once); without it an epoch is exactly one pass."""
    from dfabench.task import all_tasks

    task = all_tasks()["nerf"]
    hp = task.HParams(resolution=8, batch_size=32, steps_per_epoch=None, cache_dir=str(tmp_path))
    data = task.load_data("blobs", hp, 0, "smoke", torch.device("cpu"))
    rays = data.train.rays.reshape(-1, 6)
    per_pass = len(rays) // 32
    one_pass = list(task.train_batches(data, hp, torch.Generator().manual_seed(0)))
    assert len(one_pass) == per_pass

    hp = hp.model_copy(update={"steps_per_epoch": 3 * per_pass})
    batches = task.train_batches(data, hp, torch.Generator().manual_seed(0))
    drawn = [next(batches)[0] for _ in range(3 * per_pass)]
    index = {tuple(r.tolist()): i for i, r in enumerate(rays)}
    for p in range(3):
        seen = [index[tuple(r.tolist())] for b in drawn[p * per_pass:(p + 1) * per_pass] for r in b]
        assert len(seen) == len(set(seen)) == per_pass * 32  # no ray twice within a pass
    assert not torch.equal(drawn[0], drawn[per_pass])  # the next pass is a fresh order
