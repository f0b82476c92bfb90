"""The dead-unit profile of the authors' released DFA NeRF checkpoints, measured with the suite's probe.

    python -m dfabench.tasks.nerf.authors_checkpoints GIT_DIR_OR_FOLDER [--out results/nerf/authors-dead-units.json]

GIT_DIR_OR_FOLDER: a clone (or bare mirror) of lightonai/dfa-scales-to-modern-deep-learning, whose
``paper-experiments/neural-rendering/pretrained-models/synth_*_dfa.ckpt`` are read with ``git show``
(nothing is copied into this repository), or a folder holding those files.

Each checkpoint (DFAFlexibleNeRFModel: 4 x 128, no skip, 10 position and 4 direction frequencies,
``relu(fc_feat(h))`` with a DFA point after it) is loaded into the suite's own ``NeRF`` with
``feature_relu=True`` (tasks/nerf/models.py); their positional encoding interleaves sin and cos per
frequency where ours groups them, so the first layers' input columns are permuted to match (checked:
the suite's forward equals a direct re-implementation of theirs). The suite's ``inactive_units``
(dfabench/alignment.py, what ``extras.dead_units`` records) then counts, per feedback point, the units
that are zero on every sample of one forward pass over rays from cameras placed as in the Blender
scenes (radius 4.03 on the upper hemisphere, looking at the origin, near 2, far 6, 800 x 800 pixels
with the Blender focal length). Only the 8 synthetic scenes: the LLFF ones are in NDC space.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import torch

from dfabench.alignment import inactive_units

from .models import NeRF

CKPTS = "paper-experiments/neural-rendering/pretrained-models"
SCENES = ("chair", "drums", "ficus", "hotdog", "lego", "materials", "mic", "ship")
POS_FREQS, DIR_FREQS, WIDTH, DEPTH = 10, 4, 128, 4


def load(source: Path, scene: str) -> dict:
    name = f"synth_{scene}_dfa.ckpt"
    if (source / name).is_file():
        raw = (source / name).read_bytes()
    else:
        raw = subprocess.run(["git", "-C", str(source), "show", f"HEAD:{CKPTS}/{name}"], capture_output=True,
                             check=True).stdout
    return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=False)


def encoding_order(freqs: int) -> list[int]:
    """For each input column of our encoding (x, sin of every band, cos of every band), the column of
    theirs (x, then sin and cos band by band) that holds the same feature."""
    ours = list(range(3))
    ours += [3 + 6 * k + i for k in range(freqs) for i in range(3)]  # sin(2^k x_i)
    ours += [3 + 6 * k + 3 + i for k in range(freqs) for i in range(3)]  # cos(2^k x_i)
    return ours


def theirs_to_ours(state: dict) -> dict:
    pos, view = encoding_order(POS_FREQS), encoding_order(DIR_FREQS)
    out = {"layers.0.weight": state["layer1.weight"][:, pos], "layers.0.bias": state["layer1.bias"]}
    for i in range(DEPTH - 1):
        out[f"layers.{i + 1}.weight"] = state[f"layers_xyz.{i}.weight"]
        out[f"layers.{i + 1}.bias"] = state[f"layers_xyz.{i}.bias"]
    feature_columns = list(range(WIDTH)) + [WIDTH + c for c in view]  # cat(feature, view encoding)
    out.update({"sigma.weight": state["fc_alpha.weight"], "sigma.bias": state["fc_alpha.bias"],
                "feature.weight": state["fc_feat.weight"], "feature.bias": state["fc_feat.bias"],
                "view.weight": state["layers_dir.0.weight"][:, feature_columns], "view.bias": state["layers_dir.0.bias"],
                "rgb.weight": state["fc_rgb.weight"], "rgb.bias": state["fc_rgb.bias"]})
    return out


def blender_rays(n: int, seed: int = 0) -> torch.Tensor:
    """(n, 6) rays: a random camera of the Blender layout each, through a random pixel."""
    g = torch.Generator().manual_seed(seed)
    azimuth = 2 * math.pi * torch.rand(n, generator=g)
    elevation = torch.asin(torch.rand(n, generator=g))  # upper hemisphere, uniform on the sphere
    origin = 4.0311 * torch.stack([elevation.cos() * azimuth.cos(), elevation.cos() * azimuth.sin(), elevation.sin()], -1)
    forward = -origin / origin.norm(dim=-1, keepdim=True)
    right = torch.nn.functional.normalize(torch.cross(forward, torch.tensor([0.0, 0.0, 1.0]).expand(n, 3), dim=-1), dim=-1)
    up = torch.cross(right, forward, dim=-1)
    focal = 0.5 * 800 / math.tan(0.5 * 0.6911112070083618)  # Blender's camera_angle_x
    pixel = (torch.rand(n, 2, generator=g) - 0.5) * 800 / focal
    direction = torch.nn.functional.normalize(forward + pixel[:, :1] * right + pixel[:, 1:] * up, dim=-1)
    return torch.cat([origin, direction], -1)


def profile(source: Path, rays: int = 4096) -> dict[str, dict]:
    out = {}
    for scene in SCENES:
        checkpoint = load(source, scene)
        model = NeRF(DEPTH, WIDTH, POS_FREQS, DIR_FREQS, None, 64, 128, True, 2.0, 6.0, feature_relu=True)
        model.coarse.load_state_dict(theirs_to_ours(checkpoint["model_coarse_state_dict"]))
        model.fine.load_state_dict(theirs_to_ours(checkpoint["model_fine_state_dict"]))
        batch = blender_rays(rays)
        dead = inactive_units(model, lambda: model(batch))
        out[scene] = {"iter": int(checkpoint.get("iter", -1)), "stored_psnr": float(checkpoint.get("psnr", math.nan)),
                      "dead_units": dead}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dfabench.tasks.nerf.authors_checkpoints")
    parser.add_argument("source", help="the authors' repository (a git dir or clone) or a folder of the .ckpt files")
    parser.add_argument("--rays", type=int, default=4096)
    parser.add_argument("--out", default="results/nerf/authors-dead-units.json")
    args = parser.parse_args(argv)
    found = profile(Path(args.source), args.rays)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    for scene, row in found.items():
        shares = ", ".join(f"{k.replace('points.', 'p')}: {v:.2f}" for k, v in row["dead_units"].items())
        print(f"{scene} (psnr stored {row['stored_psnr']:.1f}): {shares}")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
