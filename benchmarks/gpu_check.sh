#!/usr/bin/env bash
# Device checks for a CUDA machine, from the repository root or anywhere:
#
#     bash benchmarks/gpu_check.sh            # JSON and the log go to $OUT if set, else benchmarks/results/
#
# 1. pytest -m gpu (the tests marked as needing a CUDA device, among them two data-parallel gloo ranks on the GPU
#    against one process);
# 2. bench_train.py (float32, then the Transformer in bf16) and bench_eval.py at paper scale with --device cuda:
#    3 synthetic source domains of 633,334 users
#    with sequences of 1.8 items on average (~1.9M users, ~3.4M interactions), B = 256, 4 heads, 2 layers, batches
#    of 256, 255 negatives, windows of 64. The data is generated once (~1.5 min on the CPU) into a cache folder that
#    bench_eval.py reuses; bench_eval ranks the full catalogue for 60,000 of the first source's test users. Each
#    step has its own time limit (60 + 300 + 150 + 240 + 180 s, then 120 + 240 s for step 4); expected total: about
#    10 minutes;
# 3. bench_train.py --paper-scale: the sparse Delta guide at that size, the projected epoch beside the paper's 25 min;
# 4. torchrun scripts/map_pretrain.py with one GPU process, and bench_ddp.py on 1 and (with several GPUs) all GPUs,
#    NCCL (limits 120 + 240 s).
# Exit status: 0 when every step ran (targets missed are reported, not failures), else 1.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS="${OUT:-benchmarks/results}"
CACHE="${PREREC_BENCH_CACHE:-${TMPDIR:-/tmp}/prerec-bench-data}"
PYTHON="${PYTHON:-python}"
mkdir -p "$RESULTS" "$CACHE"
LOG="$RESULTS/gpu_check.log"
status=0

run() {  # run LIMIT_SECONDS NAME COMMAND...: one step with a time limit, output to the terminal and the log
    local limit=$1 name=$2
    shift 2
    echo "=== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*" | tee -a "$LOG"
    timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    if [ "$rc" -ne 0 ]; then
        echo "=== $name: exit status $rc" | tee -a "$LOG"
    fi
    return "$rc"
}

"$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this script is for a GPU machine')" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$LOG"

run 60 "pytest -m gpu" "$PYTHON" -m pytest -q -m gpu -p no:cacheprovider
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "=== pytest -m gpu: no test is marked gpu" | tee -a "$LOG"
elif [ "$rc" -ne 0 ]; then
    status=1
fi

PAPER=(--device cuda --source-users 633334 --min-seq-len 1 --mean-seq-len 1.8 --max-seq-len 30 --max-len 64
       --hidden-dim 256 --heads 4 --layers 2 --data-cache "$CACHE")

run 300 "bench_train (paper scale)" "$PYTHON" benchmarks/bench_train.py "${PAPER[@]}" --batch-size 256 \
    --negatives 255 --lr 3e-4 --steps 10 --repeats 5 --out "$RESULTS/bench_train_paper.json" || status=1

run 150 "bench_train (paper scale, bf16 Transformer)" "$PYTHON" benchmarks/bench_train.py "${PAPER[@]}" \
    --transformer-dtype bfloat16 --batch-size 256 --negatives 255 --lr 3e-4 --steps 10 --repeats 3 \
    --out "$RESULTS/bench_train_paper_bf16.json" || status=1

run 240 "bench_train --paper-scale (sparse Delta guide, projected epoch)" "$PYTHON" benchmarks/bench_train.py \
    --paper-scale --device cuda --data-cache "$CACHE" --steps 20 --warmup 3 \
    --out "$RESULTS/bench_train_paper_scale.json" || status=1

run 180 "bench_eval (paper scale)" "$PYTHON" benchmarks/bench_eval.py "${PAPER[@]}" --repeats 3 \
    --max-users 60000 --out "$RESULTS/bench_eval_paper.json" || status=1

run 120 "torchrun map_pretrain (one GPU process)" "$PYTHON" -m torch.distributed.run --standalone \
    --nproc_per_node 1 scripts/map_pretrain.py --benchmark synthetic-small --device cuda --epochs 2 \
    --guide sparse-delta --runs "$RESULTS/torchrun_runs" || status=1

GPUS=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
PROCESSES=(1)
if [ "$GPUS" -gt 1 ]; then PROCESSES+=("$GPUS"); fi
run 240 "bench_ddp (${PROCESSES[*]} GPU processes)" "$PYTHON" benchmarks/bench_ddp.py --device cuda \
    --processes "${PROCESSES[@]}" --hidden-dim 256 --heads 4 --batch-size 256 --steps 20 \
    --out "$RESULTS/bench_ddp_cuda.json" || status=1

echo "=== done ($(date -u +%H:%M:%S)), status $status; results in $RESULTS" | tee -a "$LOG"
exit "$status"
