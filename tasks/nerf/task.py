"""The `nerf` task: NeRF (coarse + fine) trained by BP, DFA or shallow, the paper's section 4.1.

Datasets: ``blobs`` (easy: coloured soft spheres) and ``slab`` (harder: a thin textured box), both
rendered procedurally at orbit poses and cached in the Blender layout; ``blender`` and ``llff`` read
official scenes from ``data_dir``. Metrics: test-view PSNR (primary) and SSIM of the fine render.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_serializer

from dfabench.alignment import inactive_units
from dfabench.cache import cache_dir
from dfabench.errors import DataError
from dfabench.task import Task, TrainHParams, register_task, tensor_fingerprint

from .spec import PROCEDURAL
from .data import Views, check_blender_splits, load_blender, load_llff, write_procedural
from .models import NeRF


class NeRFHParams(TrainHParams):
    depth: int = Field(8, ge=1)
    width: int = Field(256, ge=4)
    skip: int | None = Field(4, description="layer index that re-receives the encoded input")
    pos_freqs: int = Field(10, ge=0)
    dir_freqs: int = Field(4, ge=0)
    n_coarse: int = Field(64, ge=2)
    n_fine: int = Field(128, ge=0)
    resolution: int = Field(64, ge=8, description="image side of the procedural scenes")
    downscale: int = Field(1, ge=1, description="downscale official images by this factor")
    max_eval_views: int | None = Field(None, ge=1)
    data_dir: str | None = Field(None, description="official Blender scene dir or LLFF scene dir")
    cache_dir: str | None = Field(None, description="where procedural scenes are written")
    eval_chunk: int = Field(4096, ge=1)
    feature_relu: bool = Field(False, description="the authors' feature layer: a ReLU and a feedback point after "
                               "it (their DFAFlexibleNeRFModel); the default at paper scale and in model "
                               "nerf-authors-feature")

    @model_serializer(mode="wrap")
    def _without_defaults(self, handler):
        # capture and feature_relu are left out of the dump (so of run ids) unless set: the ids of the
        # records made before they existed stay valid (TrainHParams does the same for capture alone)
        data = handler(self)
        if isinstance(data, dict):
            for key in ("capture", "feature_relu"):
                if not getattr(self, key):
                    data.pop(key, None)
        return data


@dataclass
class SceneData:
    train: Views
    val: Views
    test: Views
    near: float
    far: float
    white_bkgd: bool
    source: str


def _cache_dir(hp: NeRFHParams) -> Path:
    return Path(hp.cache_dir) / "nerf" if hp.cache_dir else cache_dir("nerf")


@functools.lru_cache(maxsize=8)
def _load(dataset: str, data_dir: str | None, cache: str, res: int, downscale: int, max_eval: int | None):
    if dataset in PROCEDURAL:
        root = write_procedural(Path(cache), dataset, res, seed=0)
        check_blender_splits(root)
        split = {s: load_blender(root, s, 1, None if s == "train" else max_eval) for s in ("train", "val", "test")}
        return SceneData(**split, near=2.0, far=6.0, white_bkgd=True, source=f"procedural:{dataset}@{res}")
    layout, _, scene = dataset.partition("-")
    if data_dir is None:
        example = f"nerf_synthetic/{scene or 'lego'}" if layout == "blender" else f"nerf_llff_data/{scene or 'fern'}"
        raise DataError(f"{dataset} needs its scene folder: --set data_dir=DIR (e.g. {example})")
    if not Path(data_dir).expanduser().is_dir():
        raise DataError(f"{dataset}: data_dir {data_dir} is not a folder")
    data_dir = str(Path(data_dir).expanduser())
    if layout == "blender":
        check_blender_splits(data_dir)
        split = {s: load_blender(data_dir, s, downscale, None if s == "train" else max_eval)
                 for s in ("train", "val", "test")}
        return SceneData(**split, near=2.0, far=6.0, white_bkgd=True, source="blender")
    split = load_llff(data_dir, downscale)
    split.update({s: Views(v.rays[:max_eval], v.rgb[:max_eval], v.hw) for s, v in split.items() if s != "train"})
    return SceneData(**split, near=0.0, far=1.0, white_bkgd=False, source="llff")


def psnr(mse: torch.Tensor) -> float:
    return float(-10 * torch.log10(mse.clamp_min(1e-10)))


@register_task
class NeRFTask(Task):
    domain = "nerf"
    HParams = NeRFHParams  # datasets, models, metrics: tasks/nerf/spec.py
    data_options = frozenset({"resolution", "downscale", "max_eval_views", "data_dir"})
    data_errors = (SyntaxError,)  # what PIL raises for a truncated image

    def load_data(self, dataset, hp: NeRFHParams, seed, scale, device) -> SceneData:
        d = _load(dataset, hp.data_dir, str(_cache_dir(hp)), hp.resolution, hp.downscale, hp.max_eval_views)
        move = lambda v: Views(v.rays.to(device), v.rgb.to(device), v.hw)
        return SceneData(move(d.train), move(d.val), move(d.test), d.near, d.far, d.white_bkgd, d.source)

    def build_model(self, model, hp: NeRFHParams, data: SceneData):
        return NeRF(hp.depth, hp.width, hp.pos_freqs, hp.dir_freqs, hp.skip, hp.n_coarse, hp.n_fine,
                    data.white_bkgd, data.near, data.far, feature_relu=hp.feature_relu)

    throughput_unit = "rays"

    def train_batches(self, data: SceneData, hp, generator):
        """Random rays from all training views. With steps_per_epoch set (every scale does) the rays
        are drawn pass after pass, each a fresh permutation, until the runner has taken that many
        batches; without it an epoch is one pass."""
        rays, rgb = data.train.rays.reshape(-1, 6), data.train.rgb.reshape(-1, 3)
        while True:
            order = torch.randperm(len(rays), generator=generator).to(rays.device)
            for start in range(0, len(rays) - hp.batch_size + 1, hp.batch_size):
                idx = order[start:start + hp.batch_size]
                yield rays[idx], rgb[idx]
            if hp.steps_per_epoch is None:
                return

    def loss(self, output, batch, model, hp):
        coarse, fine = output
        return F.mse_loss(coarse, batch[1]) + F.mse_loss(fine, batch[1])

    def render_views(self, model, views: Views, hp: NeRFHParams) -> torch.Tensor:
        out = []
        for rays in views.rays:
            out.append(torch.cat([model(c)[1] for c in rays.split(hp.eval_chunk)]))
        return torch.stack(out).clamp(0, 1)  # (N, H*W, 3)

    def per_view(self, model, views: Views, hp):
        from torchmetrics.image import StructuralSimilarityIndexMeasure

        pred = self.render_views(model, views, hp)
        h, w = views.hw
        img = lambda x: x.reshape(-1, h, w, 3).permute(0, 3, 1, 2)
        ssim = StructuralSimilarityIndexMeasure(data_range=1.0, reduction="none")
        ssims = ssim(img(pred).cpu(), img(views.rgb).cpu()).reshape(-1).tolist()
        psnrs = [psnr(((p - t) ** 2).mean()) for p, t in zip(pred, views.rgb)]
        return pred, psnrs, ssims

    def evaluate(self, model, data: SceneData, split, hp):
        _, psnrs, ssims = self.per_view(model, getattr(data, split), hp)
        return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims))}

    def fingerprint(self, data: SceneData) -> str:
        return f"{data.source}:" + tensor_fingerprint(data.train.rgb, data.test.rgb)

    def figures(self, results: Path) -> list[Path]:
        return comparison_images(results)

    def extras(self, model, data: SceneData, hp, run_dir: Path):
        from PIL import Image

        model.eval()
        with torch.no_grad():
            pred, psnrs, ssims = self.per_view(model, data.test, hp)
        mean_colour = data.train.rgb.reshape(-1, 3).mean(0)
        baseline = float(np.mean([psnr(((mean_colour - t) ** 2).mean()) for t in data.test.rgb]))
        h, w = data.test.hw
        run_dir = Path(run_dir); (run_dir / "renders").mkdir(parents=True, exist_ok=True)
        for k, p in enumerate(pred):
            arr = (p.reshape(h, w, 3).cpu().numpy() * 255).round().astype(np.uint8)
            Image.fromarray(arr).save(run_dir / "renders" / f"test_{k:03d}.png")
            gt = (data.test.rgb[k].reshape(h, w, 3).cpu().numpy() * 255).round().astype(np.uint8)
            Image.fromarray(gt).save(run_dir / "renders" / f"gt_{k:03d}.png")
        train_rays = data.train.rays.reshape(-1, 6)
        rays = train_rays[torch.randperm(len(train_rays), generator=torch.Generator().manual_seed(0))[:4096]]
        return {"test_psnr_per_view": psnrs, "test_ssim_per_view": ssims,
                "mean_colour_baseline_psnr": baseline,
                # relative to the results folder: a record carries no path of this machine
                "renders_dir": f"{run_dir.parent.name}/{run_dir.name}/renders",
                # fraction of each point's ReLUs silent on 4,096 training rays (see inactive_units)
                "dead_units": inactive_units(model, lambda: model(rays))}


def comparison_image(run_dirs_by_method: dict[str, str | Path], out_path: str | Path, view: int = 0) -> Path:
    """Compose ground truth | bp | dfa | shallow (whichever are given, in that order) for one test view.

    run_dirs_by_method: {"bp": run_dir, "dfa": run_dir, ...} where each run_dir holds renders/ as
    written by NeRFTask.extras.
    """
    from PIL import Image

    order = [m for m in ("bp", "dfa", "shallow") if m in run_dirs_by_method]
    order += [m for m in run_dirs_by_method if m not in order]
    first = Path(run_dirs_by_method[order[0]]) / "renders"
    tiles = [Image.open(first / f"gt_{view:03d}.png")]
    tiles += [Image.open(Path(run_dirs_by_method[m]) / "renders" / f"test_{view:03d}.png") for m in order]
    w, h = tiles[0].size
    canvas = Image.new("RGB", (w * len(tiles), h), "white")
    for i, tile in enumerate(tiles):
        canvas.paste(tile, (i * w, 0))
    out_path = Path(out_path); out_path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out_path)
    return out_path


def comparison_images(results: str | Path, view: int = 0) -> list[Path]:
    """Write <results>/nerf/<dataset>_<model>_seed<k>.png for every (dataset, model, seed) whose
    records have renders from at least one of bp/dfa/shallow; the CLI/reproduce hook calls this after
    a suite run (the harness records each run independently, so the side-by-side is assembled here)."""
    from dfabench.harness.store import iter_records

    cells: dict[tuple, dict[str, Path]] = {}
    for record in iter_records(Path(results)):  # valid records only; a bad one is named and skipped
        if record.get("domain") != "nerf" or record.get("status") != "ok":
            continue
        # the run's artifacts beside the records (where a run elsewhere left them too), else where it wrote them
        renders = Path(results) / "artifacts" / record["id"] / "renders"
        given = (record.get("extras") or {}).get("renders_dir")
        if not renders.is_dir() and given:  # relative to the results folder; older records: as written
            renders = next((p for p in (Path(results) / given, Path(given)) if p.is_dir()), renders)
        if not (renders / f"test_{view:03d}.png").exists():
            continue
        key = (record["dataset"], record["model"], record["seed"])
        cells.setdefault(key, {})[record["method"]] = Path(renders).parent
    return [comparison_image(dirs, Path(results) / "nerf" / f"{d}_{m}_seed{s}.png", view)
            for (d, m, s), dirs in sorted(cells.items())]

