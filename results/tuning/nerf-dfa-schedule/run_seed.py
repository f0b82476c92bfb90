# probe helper: one seed of one selector (the CLI only takes 0..N-1)
import sys, json
from pathlib import Path
from dfabench.harness.plan import plan
from dfabench.harness.executor import run_local
sel, method, seed, results = sys.argv[1:5]
overrides = dict(kv.split("=", 1) for kv in sys.argv[5:])
overrides = {k: json.loads(v) for k, v in overrides.items()}
runs, notes = plan([sel], [method], "small", [int(seed)], overrides=overrides)
run_local(runs, Path(results), "cpu")
