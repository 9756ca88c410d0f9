#!/usr/bin/env bash
# GPU checks for the lent GPU machine (issues 3 and 6), one script so that one call does them all.
#
#   bash benchmarks/gpu_check.sh [DATA_ROOT]   # from the repository root; under 10 minutes
#
# 1. with DATA_ROOT (a folder holding the Omniglot npz files): the paper profile of prototypical
#    networks, 5-way 1-shot (experiments/omniglot.py --profile paper --device cuda);
# 2. the MAML backend parity tests on CUDA: vmap vs higher meta-gradients (1e-5 relative, TF32
#    off) and the compiled backend vs higher (float64, 1e-10);
# 3. `python -m benchmarks --device cuda --quick` (every case but the CPU-only RL sampler): each
#    row against its floor (the counted plain passes, benchmarks/floors.py) and the GPU's measured
#    peak, and the compiled backend beside vmap, conv4 included, with its compile time.
# Without DATA_ROOT the script needs about 7 minutes (parity 150 s, benchmarks 300 s at most).
# Logs, results and bench-results-cuda.json go to $OUT (the device tool's folder) or ./gpu-out.
# The GPU image has torch but not higher or gymnasium: their pure-Python wheels travel in
# benchmarks/gpu_wheels/ (kept out of git) and are installed into /tmp/site when missing.
# Exit status: 0 when every part passed.
set -uo pipefail
export PYTHONUNBUFFERED=1
out_dir=${OUT:-gpu-out}
data_root=${1:-}
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
if [ -n "$data_root" ]; then
  echo "== Omniglot paper profile, prototypical networks, 5-way 1-shot"
  start=$(date +%s)
  timeout 330 $py experiments/omniglot.py --profile paper --learners protonet --ways 5 --shots 1 \
    --device cuda --data-root "$data_root" --out /tmp/omniglot-paper --no-progress \
    2>&1 | tee "$out_dir/omniglot-paper.log" || status=1
  echo "wall time $(( $(date +%s) - start )) s" | tee -a "$out_dir/omniglot-paper.log"
  for f in results.md results.json accuracy_by_split.png; do
    cp "/tmp/omniglot-paper/5way-1shot/$f" "$out_dir/omniglot-paper-$f" 2>/dev/null
  done
fi
echo "== parity tests on CUDA (tests/test_maml_backends.py, tests/test_maml_compiled.py)"
METAGYM_TEST_DEVICE=cuda timeout 150 $py -m pytest -q -p no:cacheprovider tests/test_maml_backends.py \
  tests/test_maml_compiled.py \
  2>&1 | tee "$out_dir/parity-cuda.log" || status=1
echo "== benchmarks on CUDA"
timeout 300 $py -m benchmarks --device cuda --quick --no-sampler --out "$out_dir/bench-results-cuda.json" \
  2>&1 | tee "$out_dir/bench-cuda.log" || status=1
echo "== exit status $status"
exit $status
