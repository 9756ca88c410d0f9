#!/usr/bin/env bash
# GPU checks of the task-batched MAML backend (issue 6), for the lent GPU machine.
#
#   bash benchmarks/gpu_check.sh            # from the repository root; about 3-5 minutes (< 8)
#
# 1. the backend parity tests (vmap vs higher meta-gradients, 1e-5 relative, TF32 off) on CUDA;
# 2. `python -m benchmarks --device cuda` (every case but the CPU-only RL sampler).
# Logs and bench-results-cuda.json go to $OUT (the device tool's folder) or ./gpu-out.
# The GPU image has torch but not higher or gymnasium: their pure-Python wheels travel in
# benchmarks/gpu_wheels/ (untracked, so they go with the working tree) and are installed into
# /tmp/site when missing. Exit status: 0 when both parts passed.
set -uo pipefail
export PYTHONUNBUFFERED=1
out_dir=${OUT:-gpu-out}
mkdir -p "$out_dir"
py=python3
if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
  py=.venv/bin/python
fi
if ! $py -c "import higher, gymnasium" 2>/dev/null; then
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    benchmarks/gpu_wheels/*.whl || { echo "cannot install benchmarks/gpu_wheels"; exit 2; }
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD:$PWD/envs${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
$py -c "import torch, higher; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0))" \
  || { echo "torch with CUDA or higher missing"; exit 2; }
status=0
echo "== parity tests on CUDA (tests/test_maml_backends.py)"
METAGYM_TEST_DEVICE=cuda timeout 180 $py -m pytest -q -p no:cacheprovider tests/test_maml_backends.py \
  2>&1 | tee "$out_dir/parity-cuda.log" || status=1
echo "== benchmarks on CUDA"
timeout 270 $py -m benchmarks --device cuda --no-sampler --out "$out_dir/bench-results-cuda.json" \
  2>&1 | tee "$out_dir/bench-cuda.log" || status=1
echo "== exit status $status"
exit $status
