"""What the nerf task offers (light: read by `dfabench list` without importing torch)."""
from dfabench.catalog import Metric, TaskSpec

PROCEDURAL = ("blobs", "slab")  # rendered here at known poses; the offline grid
# The official scenes, each a dataset of its own ('blender-lego'); the selector nerf/blender/lego
# names it. 'blender' and 'llff' alone read any scene in those layouts.
BLENDER_SCENES = ("chair", "drums", "ficus", "hotdog", "lego", "materials", "mic", "ship")
LLFF_SCENES = ("fern", "flower", "fortress", "horns", "leaves", "orchids", "room", "trex")
OFFICIAL = {"blender": BLENDER_SCENES, "llff": LLFF_SCENES}
DATASETS = {
    "blobs": "procedural: three coloured soft spheres on white (easy), Blender layout, cached",
    "slab": "procedural: thin box with checker/stripe texture on white (harder), Blender layout, cached",
    "blender": "any scene in the Blender synthetic layout (transforms_*.json + RGBA PNGs) from data_dir",
    "llff": "any scene in the LLFF layout (poses_bounds.npy + images/, NDC rays) from data_dir",
    **{f"blender-{s}": f"official Blender synthetic {s}: --set data_dir=.../nerf_synthetic/{s}"
       for s in BLENDER_SCENES},
    **{f"llff-{s}": f"official LLFF {s}: --set data_dir=.../nerf_llff_data/{s}" for s in LLFF_SCENES},
}

SPEC = TaskSpec(
    domain="nerf",
    entry_point="dfabench.tasks.nerf.task:NeRFTask",
    datasets=DATASETS,
    models={"nerf": "coarse + fine NeRF MLPs, positional encoding, skip; DFA at the raw (rgb, sigma)",
            "nerf-authors-feature": "the same with the authors' feature layer (a ReLU and a feedback point after "
                                    "it; feature_relu: true), the paper scale's default; run when named"},
    explicit_models=frozenset({"nerf-authors-feature"}),
    metrics=(Metric("psnr", True), Metric("ssim", True)),
    primary_metric="psnr",
    table_metrics=("psnr", "ssim"),
    capabilities=frozenset({"layerwise"}),  # Linear layers only
    # Official scenes are explicit: a glob (nerf/*/*) runs the offline procedural scenes only.
    explicit_datasets=frozenset(d for d in DATASETS if d not in PROCEDURAL),  # they need data_dir
    alias_families=frozenset(OFFICIAL),  # nerf/blender/lego is the cell nerf/blender-lego/nerf
    requires=("torch", "torchmetrics", "PIL"),
    extra="nerf",
    data={d: ("your-files",) for d in DATASETS if d not in PROCEDURAL},
)
