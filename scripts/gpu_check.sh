#!/usr/bin/env bash
# Every GPU check in one pass: the grid benchmark at the paper's settings (batch 128, 28 px), alone on
# the card, then the GPU tests and one short trainer=gpu run per backbone on PneumoniaMNIST-sized data,
# side by side (they check results, not speed; the runs reuse the benchmark's compiled code).
#
#   bash scripts/gpu_check.sh                 # results in outputs/gpu_check/ (OUT=... to change)
#   GRID_BACKBONES="resnet densenet" RUN_BACKBONES= PARTS="grid tests" bash scripts/gpu_check.sh
#
# For a CUDA machine whose Python has torch, torchvision, pytorch-lightning, torchmetrics, tensorboard and
# timm. An offline machine installs hydra-core, omegaconf, antlr4 and medmnist from WHEELS (default
# .gpu-wheels/, filled by `make gpu-wheels` on a machine with a package index).
# PARTS (grid tests runs; add concurrency), GRID_BACKBONES and RUN_BACKBONES narrow it down or widen it;
# DEVICE=cpu BENCH_ARGS=--quick RUN_SIZE=64 tries the script itself on a CPU machine (tiny sizes, trainer=cpu).
# STEP_LIMIT_S bounds each benchmark process, the tests and each run, so a hung step cannot take the whole
# slot; TOTAL_LIMIT_S bounds the whole script (each step gets what is left of it), so it ends, with its files
# written, before the limit of the machine it was lent: set it a minute or more under that limit.
# Files written (each kept whole as it goes): machine.txt, log.txt, grid.jsonl (one line per backbone),
# grid.json (the figures combined, with the paper grid's hours), tests.txt, runs.jsonl.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/gpu_check}
WHEELS=${WHEELS:-.gpu-wheels}
DEPS=${DEPS:-/tmp/gsa-exp-gpu-deps}
GRID_BACKBONES=${GRID_BACKBONES-googlenet vgg resnet densenet}
RUN_BACKBONES=${RUN_BACKBONES-googlenet vgg resnet densenet}
PARTS=${PARTS:-grid tests runs}
RUN_EPOCHS=${RUN_EPOCHS:-3}
STEP_LIMIT_S=${STEP_LIMIT_S:-900}
TOTAL_LIMIT_S=${TOTAL_LIMIT_S:-3600}
DEADLINE=$(( $(date +%s) + TOTAL_LIMIT_S ))
DEVICE=${DEVICE:-cuda}
BENCH_ARGS=${BENCH_ARGS:-}
RUN_SIZE=${RUN_SIZE:-4708}  # training images of a run (PneumoniaMNIST's count); val and test scale with it
if [ "$DEVICE" = cuda ]; then RUN_SETTINGS="trainer=gpu performance.compile=true"; else RUN_SETTINGS="trainer=cpu"; fi
mkdir -p "$OUT"
export GSA_EXP_ROOT="$PWD" PYTHONPATH="$DEPS:$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! python -c "import hydra, omegaconf, medmnist" 2>/dev/null; then
  python -m pip install --quiet --no-index --no-deps --target "$DEPS" "$WHEELS"/*
fi
python - > "$OUT/machine.txt" <<'PY'
import os, torch, pytorch_lightning
print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device", "|", os.cpu_count(), "CPUs | torch", torch.__version__,
      "| lightning", pytorch_lightning.__version__)
PY
limit() {  # seconds a step may take: STEP_LIMIT_S, or what is left before the deadline (at least 1)
  local left=$(( DEADLINE - $(date +%s) ))
  (( left < STEP_LIMIT_S )) && echo $(( left > 1 ? left : 1 )) || echo "$STEP_LIMIT_S"
}
step() { echo "[gpu_check $(date +%T)] $*" | tee -a "$OUT/log.txt"; }
part() { [[ " $PARTS " == *" $1 "* ]]; }

if part grid; then
  for backbone in $GRID_BACKBONES; do
    step "grid benchmark: $backbone"
    if timeout "$(limit)" python scripts/bench.py --device "$DEVICE" $BENCH_ARGS --parts grid --backbones "$backbone" --json \
      > "$OUT/grid.part" 2>> "$OUT/log.txt"; then
      tr -d '\n' < "$OUT/grid.part" >> "$OUT/grid.jsonl" && echo >> "$OUT/grid.jsonl"
    else
      step "grid benchmark: $backbone failed or ran out of time"
    fi
    rm -f "$OUT/grid.part"
  done
  [ -s "$OUT/grid.jsonl" ] && python -m gsa_exp.benchmark.grid --combine "$OUT/grid.jsonl" > "$OUT/grid.json"
fi

gpu_run() {  # one short trainer=gpu run (compiled step) on PneumoniaMNIST-sized data: a line of runs.jsonl
  local backbone=$1 run_dir start status
  run_dir=$(mktemp -d)/run
  start=$(date +%s)
  timeout "$(limit)" python train.py $RUN_SETTINGS backbone="$backbone" trainer.max_epochs="$RUN_EPOCHS" \
    dataset.image_size=28 dataset.batch_size=128 dataset.source.num_train="$RUN_SIZE" \
    dataset.source.num_val=$(( RUN_SIZE / 9 )) dataset.source.num_test=$(( RUN_SIZE * 2 / 15 )) \
    trainer.enable_progress_bar=false extras.print_config=false \
    "hydra.run.dir=$run_dir" > "$run_dir.log" 2>&1
  status=$?
  python - "$backbone" "$status" $(( $(date +%s) - start )) "$run_dir/metrics.json" >> "$OUT/runs.jsonl" <<'PY'
import json, pathlib, sys
backbone, status, seconds, metrics = sys.argv[1:]
path = pathlib.Path(metrics)
print(json.dumps({"backbone": backbone, "exit": int(status), "seconds": int(seconds),
                  "metrics": json.loads(path.read_text()) if path.is_file() else None}))
PY
  [ $status -eq 0 ] || { echo "--- $backbone run failed:"; tail -20 "$run_dir.log"; } >> "$OUT/log.txt"
}

pids=()
if part tests; then
  step "GPU tests"
  (timeout "$(limit)" python -m pytest -q -p no:cacheprovider tests/test_gpu.py > "$OUT/tests.txt" 2>&1;
   tail -3 "$OUT/tests.txt" | tee -a "$OUT/log.txt") &
  pids+=($!)
fi
if part runs; then
  for backbone in $RUN_BACKBONES; do
    step "trainer=gpu run: $backbone"
    gpu_run "$backbone" &
    pids+=($!)
  done
fi
[ ${#pids[@]} -gt 0 ] && wait "${pids[@]}"
if part concurrency; then
  step "concurrency: 2 jobs sharing the GPU vs 1 (resnet densenet)"
  python scripts/bench.py --device cuda --parts concurrency --jobs 2 --backbones resnet densenet --json \
    > "$OUT/concurrency.json" 2>> "$OUT/log.txt"
fi
step "done"
