"""Scenes as rays: procedural scenes written in the Blender layout, and Blender / LLFF loaders."""
from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dfabench.errors import DataError


@dataclass
class Views:
    rays: torch.Tensor   # (N, H*W, 6) origin + direction
    rgb: torch.Tensor    # (N, H*W, 3)
    hw: tuple[int, int]


def camera_rays(c2w: np.ndarray, h: int, w: int, focal: float) -> np.ndarray:
    """OpenGL convention (Blender/NeRF): camera looks down -z, y up. Returns (h*w, 6)."""
    i, j = np.meshgrid(np.arange(w, dtype=np.float32) + 0.5, np.arange(h, dtype=np.float32) + 0.5, indexing="xy")
    dirs = np.stack([(i - w / 2) / focal, -(j - h / 2) / focal, -np.ones_like(i)], -1)
    d = dirs @ c2w[:3, :3].T
    o = np.broadcast_to(c2w[:3, 3], d.shape)
    return np.concatenate([o, d], -1).reshape(-1, 6).astype(np.float32)


def orbit_pose(theta: float, phi: float, radius: float) -> np.ndarray:
    """Camera-to-world matrix on a sphere looking at the origin (z up)."""
    eye = radius * np.array([math.cos(phi) * math.cos(theta), math.cos(phi) * math.sin(theta), math.sin(phi)])
    back = eye / np.linalg.norm(eye)
    right = np.cross([0, 0, 1.0], back); right /= np.linalg.norm(right)
    up = np.cross(back, right)
    c2w = np.eye(4); c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, back, eye
    return c2w


# -- procedural scenes: analytic density + colour fields, ray-marched -------------------------------
def _field(name: str, pts: np.ndarray, rng: np.random.Generator):
    if name == "blobs":  # easy: a few coloured soft spheres
        centres = np.array([[0.5, 0, 0], [-0.4, 0.4, 0.1], [0, -0.5, -0.2]])
        colours = np.array([[0.9, 0.2, 0.2], [0.2, 0.8, 0.3], [0.2, 0.3, 0.9]])
        g = np.exp(-((pts[..., None, :] - centres) ** 2).sum(-1) / (2 * 0.3 ** 2))  # (..., 3)
        sigma = 40 * g.sum(-1)
        rgb = (g[..., None] * colours).sum(-2) / (g.sum(-1, keepdims=True) + 1e-8)
        return sigma, rgb
    if name == "slab":  # harder: a thin box with a high-frequency checker/stripe texture
        x, y, z = pts[..., 0], pts[..., 1], pts[..., 2]
        inside = (np.abs(x) < 0.8) & (np.abs(y) < 0.8) & (np.abs(z) < 0.15)
        sigma = 60.0 * inside
        check = ((np.floor(x * 4) + np.floor(y * 4)) % 2)[..., None]
        stripe = 0.5 + 0.5 * np.sin(6 * z)[..., None]
        rgb = check * np.array([0.95, 0.7, 0.1]) + (1 - check) * np.array([0.1, 0.3, 0.8]) * stripe
        return sigma, rgb
    raise KeyError(name)


def render_procedural(name: str, c2w: np.ndarray, h: int, w: int, focal: float, samples: int = 192):
    """RGBA image of scene `name` (alpha = accumulated opacity), by ray marching."""
    rays = camera_rays(c2w, h, w, focal)
    t = np.linspace(2.0, 6.0, samples, dtype=np.float32)
    pts = rays[:, None, :3] + t[None, :, None] * rays[:, None, 3:]
    sigma, rgb = _field(name, pts, None)
    delta = (t[1] - t[0]) * np.linalg.norm(rays[:, 3:], axis=-1, keepdims=True)
    alpha = 1 - np.exp(-sigma * delta)
    trans = np.cumprod(np.concatenate([np.ones_like(alpha[:, :1]), 1 - alpha[:, :-1]], -1), -1)
    wts = alpha * trans
    colour = (wts[..., None] * rgb).sum(1)
    acc = wts.sum(1, keepdims=True)
    return np.concatenate([colour, acc], -1).reshape(h, w, 4)


def write_procedural(root: Path, name: str, res: int, seed: int, n_train=40, n_val=4, n_test=4) -> Path:
    """Render `name` at orbit poses into root/name_res (Blender layout); deterministic from seed.
    Training views at random poses; validation and test views evenly around the orbit at mid
    elevation, the test views half a step further round, so no view is in two splits."""
    # v2: the layout since validation and test views stopped sharing poses (a v1 cache had them equal)
    out = Path(root) / f"{name}_{res}_s{seed}_v2"
    if (out / "transforms_test.json").exists():
        return out
    rng = np.random.default_rng(seed)
    cam_angle = 0.69  # ~40 degrees, as in the Blender scenes
    focal = 0.5 * res / math.tan(0.5 * cam_angle)
    # A private scratch folder per process, renamed into place: concurrent runs (several workers on
    # one machine) never read a half-written scene; the loser of the race drops its copy.
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        (tmp / split).mkdir(exist_ok=True)
        frames = []
        for k in range(n):
            offset = {"val": 0.25, "test": 0.75}.get(split, 0.0)
            theta = rng.uniform(0, 2 * math.pi) if split == "train" else 2 * math.pi * (k + offset) / n
            phi = rng.uniform(0.15, 0.9) if split == "train" else 0.5
            c2w = orbit_pose(theta, phi, 4.0)
            img = render_procedural(name, c2w, res, res, focal)
            Image.fromarray((img.clip(0, 1) * 255).round().astype(np.uint8), "RGBA").save(tmp / split / f"r_{k}.png")
            frames.append({"file_path": f"./{split}/r_{k}", "transform_matrix": c2w.tolist()})
        (tmp / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": cam_angle, "frames": frames}))
    try:
        os.rename(tmp, out)
    except OSError:  # another process finished first: its scene is identical (same seed)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# -- loaders --------------------------------------------------------------------------------------
def blender_frames(root: str | Path, split: str) -> tuple[dict, list[Path]]:
    """A Blender split's metadata and image paths, checked: the transforms file is JSON with
    camera_angle_x and a non-empty list of frames, each with a 4x4 transform_matrix and an image that
    exists. Anything else is a DataError naming the file (and frame)."""
    root = Path(root)
    meta_path = root / f"transforms_{split}.json"
    if not meta_path.is_file():
        raise DataError(f"{meta_path}: missing (a Blender scene folder holds transforms_{{train,val,test}}.json)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{meta_path}: not JSON ({err})".splitlines()[0]) from None
    frames = meta.get("frames") if isinstance(meta, dict) else None
    if not isinstance(frames, list) or not frames:
        raise DataError(f"{meta_path}: no frames: the {split} split would be empty")
    if not isinstance(meta.get("camera_angle_x"), (int, float)):
        raise DataError(f"{meta_path}: field camera_angle_x is missing or not a number")
    paths = []
    for k, frame in enumerate(frames):
        name = frame.get("file_path") if isinstance(frame, dict) else None
        matrix = np.asarray(frame.get("transform_matrix") if isinstance(frame, dict) else None, dtype=object)
        if not isinstance(name, str) or matrix.shape != (4, 4):
            raise DataError(f"{meta_path}: frames[{k}] needs a file_path and a 4x4 transform_matrix")
        path = root / (name + ("" if name.endswith(".png") else ".png"))
        if not path.is_file():
            raise DataError(f"{meta_path}: frames[{k}]: image {path} does not exist")
        paths.append(path)
    return meta, paths


def check_blender_splits(root: str | Path) -> None:
    """Across splits: every image shares one size, and no view is in both val and test (identical
    files would make the test set the selection set). Every view is checked, not only those a run
    evaluates on."""
    import hashlib

    sizes, digests = {}, {}
    for split in ("train", "val", "test"):
        _, paths = blender_frames(root, split)
        for path in paths:
            try:
                with Image.open(path) as img:
                    sizes.setdefault(img.size, path)
            except (OSError, SyntaxError) as err:
                raise DataError(f"{path}: not a readable image ({err})".splitlines()[0]) from None
        if split != "train":
            digests[split] = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in paths}
    if len(sizes) > 1:
        (a, pa), (b, pb) = list(sizes.items())[:2]
        raise DataError(f"{pb}: {b[0]}x{b[1]} pixels, but {pa} is {a[0]}x{a[1]}: every view must share one size")
    same = set(digests["val"]) & set(digests["test"])
    if same:
        digest = sorted(same)[0]
        raise DataError(f"{digests['test'][digest]} is identical to validation view {digests['val'][digest]}: "
                        "val and test must be different views")


def load_blender(root: str | Path, split: str, downscale: int = 1, max_views: int | None = None) -> Views:
    """Official Blender synthetic layout; RGBA composited on white."""
    meta, paths = blender_frames(root, split)
    rays, rgbs = [], []
    for frame, path in zip(meta["frames"][:max_views], paths[:max_views]):
        img = Image.open(path).convert("RGBA")
        if downscale > 1:
            img = img.resize((img.width // downscale, img.height // downscale), Image.LANCZOS)
        a = np.asarray(img, dtype=np.float32) / 255.0
        h, w = a.shape[:2]
        rgbs.append((a[..., :3] * a[..., 3:] + (1 - a[..., 3:])).reshape(-1, 3))
        focal = 0.5 * w / math.tan(0.5 * meta["camera_angle_x"])
        rays.append(camera_rays(np.array(frame["transform_matrix"], dtype=np.float32), h, w, focal))
    return Views(torch.from_numpy(np.stack(rays)), torch.from_numpy(np.stack(rgbs)), (h, w))


def ndc_rays(rays: np.ndarray, h: int, w: int, focal: float, near: float = 1.0) -> np.ndarray:
    """Map rays to normalised device coordinates (forward-facing LLFF scenes), as in NeRF."""
    o, d = rays[:, :3], rays[:, 3:]
    t = -(near + o[:, 2]) / d[:, 2]
    o = o + t[:, None] * d
    o0 = -1 / (w / (2 * focal)) * o[:, 0] / o[:, 2]
    o1 = -1 / (h / (2 * focal)) * o[:, 1] / o[:, 2]
    o2 = 1 + 2 * near / o[:, 2]
    d0 = -1 / (w / (2 * focal)) * (d[:, 0] / d[:, 2] - o[:, 0] / o[:, 2])
    d1 = -1 / (h / (2 * focal)) * (d[:, 1] / d[:, 2] - o[:, 1] / o[:, 2])
    d2 = -2 * near / o[:, 2]
    return np.concatenate([np.stack([o0, o1, o2], -1), np.stack([d0, d1, d2], -1)], -1).astype(np.float32)


def _poses_bounds(root: Path) -> np.ndarray:
    path = root / "poses_bounds.npy"
    if not path.is_file():
        raise DataError(f"{path}: missing (an LLFF scene folder holds poses_bounds.npy and images/)")
    try:
        pb = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DataError(f"{path}: not a NumPy array file ({err})".splitlines()[0]) from None
    if pb.ndim != 2 or pb.shape[1] != 17 or not np.isfinite(pb).all():
        raise DataError(f"{path}: expected N x 17 finite numbers (3x5 pose and 2 bounds per view), got {pb.shape}")
    return pb


def _llff_images(root: Path, views: int, holdout: int) -> list[Path]:
    folder = root / "images"
    if not folder.is_dir():
        raise DataError(f"{folder}: missing (an LLFF scene folder holds poses_bounds.npy and images/)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if len(files) != views:
        raise DataError(f"{folder}: {len(files)} images for the {views} poses in poses_bounds.npy")
    if views <= holdout // 2:  # view 0 is test, view holdout//2 validation, the rest train
        raise DataError(f"{root / 'poses_bounds.npy'}: {views} views; train, val and test need at least "
                        f"{holdout // 2 + 1}")
    return files


def load_llff(root: str | Path, downscale: int = 1, holdout: int = 8) -> dict[str, Views]:
    """LLFF layout (poses_bounds.npy + images/). Every `holdout`-th view is test (the NeRF protocol);
    the view halfway between two test views is validation, taken out of training: NeRF's own code
    validates on the test views, which would pick the checkpoint on test here."""
    root = Path(root)
    pb = _poses_bounds(root)
    poses = pb[:, :15].reshape(-1, 3, 5)
    bounds = pb[:, 15:]
    # LLFF stores [down, right, back]; NeRF uses [right, up, back].
    poses = np.concatenate([poses[:, :, 1:2], -poses[:, :, 0:1], poses[:, :, 2:]], -1)
    poses[:, :3, 3] *= 1.0 / (bounds.min() * 0.75)  # so the near plane sits past 1 (NDC near)
    files = _llff_images(root, len(pb), holdout)
    rays, rgbs, size = [], [], None
    for pose, f in zip(poses, files):
        img = Image.open(f).convert("RGB")
        if size is not None and img.size != size:
            raise DataError(f"{f}: {img.width}x{img.height} pixels, but {files[0]} is {size[0]}x{size[1]}: "
                            "every view must share one size")
        size = img.size
        if downscale > 1:
            img = img.resize((img.width // downscale, img.height // downscale), Image.LANCZOS)
        a = np.asarray(img, dtype=np.float32) / 255.0
        h, w = a.shape[:2]
        focal = pose[2, 4] * w / pose[1, 4]
        c2w = np.eye(4, dtype=np.float32); c2w[:3, :4] = pose[:, :4]
        rays.append(ndc_rays(camera_rays(c2w, h, w, focal), h, w, focal))
        rgbs.append(a.reshape(-1, 3))
    rays, rgbs = torch.from_numpy(np.stack(rays)), torch.from_numpy(np.stack(rgbs))
    index = torch.arange(len(files))
    test, val = index % holdout == 0, index % holdout == holdout // 2
    views = lambda m: Views(rays[m], rgbs[m], (h, w))
    return {"train": views(~test & ~val), "val": views(val), "test": views(test)}
