#!/usr/bin/env bash
# The GPU check of issue 15, as one bounded script for a lent GPU machine (see benchmarks/README.md).
#
#   bash benchmarks/gpu_check.sh [OUT]      # OUT: where the logs and results-*.json go (default: ./gpu-check)
#
# Expects a Python with torch (CUDA) and torchvision; the other packages the tests need come as
# wheels in .whl/ when the machine cannot reach a registry (installed into /tmp/site, nothing else
# is touched). Each part has its own time limit, so one slow part cannot take the others' time.
set -u
OUT=${1:-${OUT:-gpu-check}}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 EXPLAINERS_OFFLINE=1
PY=${PYTHON:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
# the package itself (its kernel-provisioner entry point is what `explainers serve` uses to fork kernels)
$PY -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --target /tmp/site . || exit 1
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc; free -g | sed -n 2p
  $PY -c "import torch, torchvision, platform; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'python', platform.python_version(), torch.cuda.get_device_name(0))"
} 2>&1 | tee "$OUT/machine.txt"

echo "== 1. GPU tests (tests/models/test_gpu.py, forked kernels on the GPU)"
timeout 130 $PY -m pytest -q -p no:cacheprovider tests/models/test_gpu.py tests/app/test_forking.py 2>&1 | tee "$OUT/gpu-tests.log" | tail -15

echo "== 2. benchmarks on cuda: live models, sliding window, scale"
timeout 100 $PY -m benchmarks --device cuda --only models,sliding,scale --out "$OUT/results-cuda-models.json" 2>&1 | tee "$OUT/bench-models.log" | grep -v "^wrote"

echo "== 3. benchmarks on cuda: students' requests per second"
timeout 170 $PY -m benchmarks --device cuda --only serve --out "$OUT/results-cuda-serve.json" 2>&1 | tee "$OUT/bench-serve.log" | grep -v "^wrote"

echo "== 4. the ops, models and widgets suites with the live models on the GPU"
# pytest-xdist comes with the device image (as do pytest, hypothesis, psutil, scikit-image: see
# gpu_wheels.sh); without it the suites run in one process, slower
XDIST=$($PY -c "import xdist" 2>/dev/null && echo "-n ${WORKERS:-12}")
EXPLAINERS_TEST_DEVICE=cuda timeout 150 $PY -m pytest -q -p no:cacheprovider $XDIST \
  -m "not browser and not newcomer and not hub" tests/ops tests/models tests/widgets tests/test_cli.py \
  2>&1 | tee "$OUT/suite-cuda.log" | tail -25
