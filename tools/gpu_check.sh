#!/usr/bin/env bash
# The GPU checks, as one script for a lent GPU machine (its image has torch, sklearn, pyarrow,
# sympy and rich; evodisc runs from the working tree). Writes logs under $OUT when set.
set -uo pipefail
out=${OUT:-/tmp/evodisc-gpu}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
    | tee -a "$out/gpu.txt"
# The suite on the GPU machine: trainer, fitness, replay and cache tests pick CUDA by default, and
# the device-parametrised tests cover every visible GPU. (The zoo and hashing tests need
# lion-pytorch, which that image lacks; they exercise no CUDA code.)
timeout 240 python3 -m pytest -q -p no:cacheprovider -n 8 --ignore tests/test_zoo.py \
    --ignore tests/test_hashing.py tests 2>&1 | tee "$out/tests.txt" | tail -15
# Throughput: batched vs naive, FLOP/s share, memory per candidate.
timeout 420 python3 tools/bench_fitness.py --device cuda "$@" 2>&1 | tee "$out/bench_fitness.txt"
