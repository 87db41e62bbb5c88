#!/usr/bin/env bash
# GPU check of the Keras family (never part of the test suite). On a machine with an NVIDIA GPU and
# JAX (no TensorFlow needed): trains keras-mf and I-AutoRec for a few epochs on MovieLens-20M-shaped
# synthetic data with the JAX backend, fails unless each trained on a GPU and its train RMSE fell,
# and prints seconds per epoch, examples per second and peak RSS (benchmarks/keras_epochs.py).
#
#     benchmarks/gpu_check.sh [ROWS] [EPOCHS]          (defaults: 20000000 ratings, 3 epochs)
#
# Offline machines: the project runs from this checkout; when keras cannot be imported it is installed
# (with namex and optree) from the wheels in $FACTORFLOW_WHEELS (default .whl/, made beforehand by
# benchmarks/gpu_wheels.sh and carried with the tree) into a private folder.
# GPU_CHECK_DRY_RUN=1 runs the same steps on a machine without a GPU (no nvidia-smi, no GPU assertion),
# to try the script and the wheels before spending device time.
# Results: $OUT/keras_epochs_gpu.json when OUT is set, else benchmarks/results/keras_epochs_gpu.json.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-20000000}
EPOCHS=${2:-3}
WHEELS=${FACTORFLOW_WHEELS:-.whl}
PY=${PYTHON:-python3}
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
# JAX preallocates 75% of the GPU by default; the model needs far less and the check must not hog it.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

REQUIRE_GPU=--require-gpu
if [[ ${GPU_CHECK_DRY_RUN:-0} == 1 ]]; then
  REQUIRE_GPU=
else
  nvidia-smi -L || { echo "gpu_check: no NVIDIA GPU here (nvidia-smi failed)" >&2; exit 2; }
fi
"$PY" -c "import jax; print('jax', jax.__version__, jax.devices())"
# The project runs from this checkout (always the code under test); keras and its needs come from wheels.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import keras" 2>/dev/null; then
  wheels=()
  for w in "$WHEELS"/*.whl; do [[ -e $w && $(basename "$w") != factorflow-* ]] && wheels+=("$w"); done
  ((${#wheels[@]})) || { echo "gpu_check: keras is missing and $WHEELS has no wheels (run benchmarks/gpu_wheels.sh)" >&2; exit 2; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/ff-site "${wheels[@]}"
  export PYTHONPATH="$PYTHONPATH:/tmp/ff-site"
fi
"$PY" -c "import keras; print('keras', keras.__version__, 'backend', keras.backend.backend())"
"$PY" benchmarks/keras_epochs.py --rows "$ROWS" --epochs "$EPOCHS" --models keras-mf,i-autorec \
  $REQUIRE_GPU --check-loss --out "${OUT:-benchmarks/results}/keras_epochs_gpu.json"
