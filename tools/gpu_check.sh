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
