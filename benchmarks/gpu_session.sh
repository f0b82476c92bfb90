#!/usr/bin/env bash
# The GPU checks of issue 23 in one device call: the CUDA graph step against eager (cuda_check.py),
# then the engine benchmark with CUDA streams (engine.py --device cuda --streams).
#
# Here, before the call (the device image has python3 3.12 with torch and CUDA, but not pydantic,
# and reaches no package registry):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl -r benchmarks/gpu_wheels.txt
# Then the device tool's run with command "bash benchmarks/gpu_session.sh", carry [".whl"] and a
# timeout of about 540 s; copy what comes back (gpu.txt, cuda-check.txt, engine-gpu.txt) into
# results/bench/ and the figures into the README's engine section.
set -uo pipefail
mkdir -p "${OUT:-results/bench}" && out=$(cd "${OUT:-results/bench}" && pwd) || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --target /tmp/site . \
    || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 TQDM_DISABLE=1
cd /tmp || exit 1  # import the installed dfabench, not the source folder's (tasks/ installs as dfabench.tasks)
repo=$OLDPWD
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; python3 -c \
    'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())'; \
    git -C "$repo" rev-parse HEAD 2>/dev/null || echo "commit: no git metadata in this copy (the caller notes it)"; } \
    | tee "$out/gpu.txt"
timeout 200 python3 "$repo/benchmarks/cuda_check.py" --out "$out/cuda-check.txt"
echo "cuda_check exit $?"
timeout 280 python3 "$repo/benchmarks/engine.py" --device cuda --streams --steps 200 --out "$out/engine-gpu.txt"
echo "engine exit $?"
