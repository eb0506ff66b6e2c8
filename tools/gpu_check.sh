#!/usr/bin/env bash
# The GPU checks, as one script for a lent GPU machine: evodisc runs from the working tree on the
# packages of that machine's image (test modules whose imports it lacks are skipped, and listed).
# Writes logs under $OUT when set.
set -uo pipefail
out=${OUT:-/tmp/evodisc-gpu}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 EVODISC_CACHE=$out/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 - <<'PY' | tee -a "$out/gpu.txt"
import importlib, sys
import torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())
for name in ("ray", "pandas", "hypothesis", "lion_pytorch", "xdist", "sklearn", "pyarrow", "rich"):
    try:
        importlib.import_module(name)
        print(name, "yes")
    except ImportError:
        print(name, "MISSING")
PY
# The suite on the GPU: trainer, fitness, worker, replay and campaign tests pick CUDA by default.
ignore=()
python3 -c "import ray" 2>/dev/null || ignore+=(--ignore tests/test_campaign_ray.py)
python3 -c "import pandas" 2>/dev/null || ignore+=(--ignore tests/test_store.py)
python3 -c "import lion_pytorch" 2>/dev/null \
    || ignore+=(--ignore tests/test_zoo.py --ignore tests/test_hashing.py)
python3 -c "import hypothesis" 2>/dev/null \
    || ignore+=(--ignore tests/test_program.py --ignore tests/test_search_space.py
                --ignore tests/test_hashing.py)
workers=()
python3 -c "import xdist" 2>/dev/null && workers=(-n 8 --dist loadgroup)
echo "ignored: ${ignore[*]:-none}" | tee "$out/tests.txt"
timeout 300 python3 -m pytest -q -p no:cacheprovider -o addopts="" "${workers[@]}" \
    "${ignore[@]}" ${GPU_TESTS:-tests} 2>&1 | tee -a "$out/tests.txt" | tail -15
# A Lion-style campaign on the GPU, in-process (no Ray on the image), for two minutes.
sed -e 's/^evaluators = 4 .*/evaluators = 0/' \
    -e "s/^wall_seconds = .*/wall_seconds = ${CAMPAIGN_SECONDS:-120}/" \
    experiments/lion_search.toml > "$out/lion_gpu.toml"
timeout 240 python3 -m evodisc.app.cli run "$out/lion_gpu.toml" --out "$out/lion_run" \
    --no-ray --quiet 2>&1 | tee "$out/campaign.txt" | tail -20
python3 - "$out/lion_run" <<'PY' | tee -a "$out/campaign.txt"
import collections, sys
import pyarrow.parquet as pq
log = pq.read_table(sys.argv[1] + "/log").to_pylist()
trained = [r for r in log if not r["cache_hit"] and r["status"] in ("ok", "diverged", "error")]
span = max(r["wall_time"] for r in log) - min(r["wall_time"] for r in log)
print(f"{len(log)} candidates, {len(trained)} trained in {span:.0f} s: "
      f"{len(log) / span:.1f} candidates/s, {len(trained) / span:.1f} trained/s")
print("status", dict(collections.Counter(r["status"] for r in log)))
print("best", max(r["fitness"] for r in log))
reasons = collections.Counter(r["details"][:160] for r in log if r["status"] == "error")
for reason, count in reasons.most_common(5):
    print("error x", count, reason)
PY
# Exported optimizers (docs/export.md) vs torch.optim's default (foreach on CUDA) and lion-pytorch
# (when installed) on the GPU, and the batch size an evaluator would pick here
# (fitness/batch_size.py). Informational: neither can fail this script.
(timeout 150 python3 tools/bench_export.py --device cuda --rounds 20 2>&1 \
    | tee "$out/export.txt" | tail -22) || true
(timeout 120 python3 - <<'PY' 2>&1 | tee "$out/batch_size.txt") || true
import torch
from fitness.batch_size import candidates_per_batch, free_memory, model_cost
from fitness.tasks import load_task, task_names
print(f"free {free_memory('cuda') / 2**30:.1f} GiB")
for name in task_names():
    print(name, model_cost(load_task(name), torch.float32, "cuda"))
print("candidates_per_batch (8 lrs):", candidates_per_batch(task_names(), 8, device="cuda"))
PY
