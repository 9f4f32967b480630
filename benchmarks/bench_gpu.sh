#!/usr/bin/env bash
# Every GPU figure of issue 19 in one run, for a GPU machine lent for a few minutes (benchmarks/README.md, "GPU").
#
#   bash benchmarks/bench_gpu.sh OUTDIR [ISBI_DIR] [WHEELS_DIR]
#
# WHEELS_DIR (optional): wheels of this package and of what the machine's Python lacks, installed first into a
# private folder (a GPU machine without a registry). Each step has a time limit and the whole run a deadline
# (BENCH_GPU_SECONDS, default 540), so a slow step costs its own figures only. SIZE (default 8192), BUDGET
# (default 300) and DEVICE (default cuda) make a short rehearsal on a CPU possible.
set -uo pipefail
out=$(realpath -m "${1:?an output folder}")
isbi=$(realpath -m "${2:-$(dirname "$0")/../../shared/data/isbi2012}")
wheels=${3:+$(realpath -m "$3")}
size=${SIZE:-8192}
budget=${BUDGET:-300}
device=${DEVICE:-cuda}
deadline=$(($(date +%s) + ${BENCH_GPU_SECONDS:-540}))
export PYTHONUNBUFFERED=1
mkdir -p "$out"
cd "$(dirname "$0")/.."

if [ -n "$wheels" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$wheels"/*.whl || exit 1
    export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
fi

step() {  # step NAME SECONDS command...: run with the smaller of its limit and what is left of the deadline
    local name=$1 limit=$2 left
    shift 2
    left=$((deadline - $(date +%s)))
    if [ "$left" -lt 20 ]; then
        echo "== $name: skipped, the deadline is near" | tee -a "$out/summary.txt"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name ($(date -u +%T), limit ${limit}s): $*" | tee -a "$out/summary.txt"
    local started=$(date +%s)
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
    echo "== $name: exit ${PIPESTATUS[0]} after $(($(date +%s) - started)) s" | tee -a "$out/summary.txt"
}

step machine 30 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; \
    python3 -c 'import torch, numpy; print(\"torch\", torch.__version__, \"numpy\", numpy.__version__)'"
# Prediction, the paper network on SIZE x SIZE: bf16 (the automatic precision) then fp32, each against MONAI
step predict_bf16 90 python3 benchmarks/bench_predict.py --device "$device" --size "$size" --networks paper,medium,small \
    --dtype bf16 --monai --repeats 2
step predict_fp32 90 python3 benchmarks/bench_predict.py --device "$device" --size "$size" --networks paper \
    --dtype fp32 --monai --repeats 2
# The test suite on the GPU (the napari widgets' tests need napari, Qt and a display: not on such a machine)
step tests 150 python3 -m pytest -q -p no:cacheprovider -x -n 8 --device "$device" tests/core tests/io tests/cli \
    --ignore tests/core/test_bioimageio.py --ignore tests/cli/test_cli_export.py
# The defaults for BUDGET seconds on ISBI 2012 slices 0-19, scored on 20-24
export SEAMLESS_UNET_ISBI="$isbi"
step isbi $((budget + 120)) python3 benchmarks/bench_quality.py --only isbi \
    --budget-isbi "$budget" --device "$device" --json "$out/isbi.json"
# Training throughput of the paper network, what time is left
step train_speed 120 python3 benchmarks/bench_train_speed.py --device "$device" --data "$isbi" --networks paper \
    --steps 80 --warmup 8 --repeats 2 --train-seconds 0
