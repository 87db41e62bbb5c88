#!/usr/bin/env bash
# Build the wheels benchmarks/gpu_check.sh installs on a GPU machine that cannot reach an index:
# keras and the two of its needs a JAX/CUDA image usually lacks (namex, optree), for CPython 3.12
# on x86-64 Linux, plus this project's own wheel (for machines without a checkout; gpu_check.sh runs
# the checkout it lives in), all into .whl/ (git-ignored). Run here, once:
#     benchmarks/gpu_wheels.sh [PYTHON_VERSION]        (default 3.12)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-3.12}
mkdir -p .whl
rm -f .whl/*.whl
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
python -m pip download -q --no-deps --only-binary=:all: --python-version "$PY" --implementation cp \
  "${platforms[@]}" -d .whl keras namex optree
python -m pip wheel -q --no-deps --no-build-isolation -w .whl .
ls -1 .whl
