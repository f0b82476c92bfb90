"""The committed side file of architecture facts (results/architecture.json) for records made before
runs recorded them: each cell's ``Task.architecture``, rebuilt once in a full environment, so that
`dfabench explain` never rebuilds a model and gives the same report wherever it runs. The records and
their run ids are not touched."""
from __future__ import annotations

from typing import Any

import torch


def rebuild(domain: str, dataset: str, model: str, scale: str) -> dict[str, Any]:
    """``Task.architecture`` of the cell with the hyper-parameters its runs at ``scale`` get (BP's), its
    data loaded as a run would on the CPU; {"error": why} where that cannot be done here. Used once,
    by ``main``, to write the facts of cells whose records predate run-time facts."""
    from ..harness.plan import plan

    try:
        run = plan([f"{domain}/{dataset}/{model}"], ["bp"], scale, [0])[0][0]
        data = run.task.load_data(dataset, run.hparams, 0, scale, torch.device("cpu"))
        return run.task.architecture(model, run.hparams, data)
    except Exception as err:  # noqa: BLE001 - a cell that cannot be built here is written as such
        return {"error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}


def main(argv: list[str] | None = None) -> int:
    """``python -m dfabench.report.architecture_facts FOLDER... --out results/architecture.json``: the facts of every
    cell (scale/domain/dataset/model) whose ok records under the folders, without overrides, carry none,
    rebuilt once in a full environment and merged into the side file `dfabench explain` reads. The
    records and their run ids are not touched."""
    import argparse
    import json
    from pathlib import Path

    from ..harness.store import iter_records

    parser = argparse.ArgumentParser(prog="python -m dfabench.report.architecture_facts")
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--out", default="results/architecture.json")
    args = parser.parse_args(argv)
    out = Path(args.out)
    facts = json.loads(out.read_text()) if out.is_file() else {}
    cells = sorted({(r["scale"], r["domain"], r["dataset"], r["model"]) for folder in args.folders
                    for r in iter_records(Path(folder))
                    if r.get("status") == "ok" and not r.get("overrides") and not r.get("data")
                    and not isinstance(r.get("architecture"), dict)})
    for scale, domain, dataset, model in cells:
        key = f"{scale}/{domain}/{dataset}/{model}"
        if key not in facts or "error" in facts[key]:
            facts[key] = rebuild(domain, dataset, model, scale)
            print(f"{key}: {facts[key]}")
    out.write_text(json.dumps(dict(sorted(facts.items())), indent=1, sort_keys=True) + "\n")
    print(f"wrote {out} ({len(facts)} cells)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
