#!/usr/bin/env bash
# Every GPU check in one pass: the GPU tests, the grid benchmark at the paper's settings
# (batch 128, 28 px) and one short trainer=gpu run per backbone on PneumoniaMNIST-sized data.
#
#   bash scripts/gpu_check.sh                 # results in outputs/gpu_check/ (OUT=... to change)
#
# For a CUDA machine whose Python has torch, torchvision, pytorch-lightning, torchmetrics and
# tensorboard. An offline machine installs hydra-core, omegaconf, antlr4 and medmnist from
# WHEELS (default .gpu-wheels/, filled by `make gpu-wheels` on a machine with a package index).
# BACKBONES and PARTS (tests grid runs; add concurrency) narrow it down or widen it.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/gpu_check}
WHEELS=${WHEELS:-.gpu-wheels}
DEPS=${DEPS:-/tmp/gsa-exp-gpu-deps}
BACKBONES=${BACKBONES:-googlenet vgg resnet densenet}
PARTS=${PARTS:-tests grid runs}
mkdir -p "$OUT"
export GSA_EXP_ROOT="$PWD" PYTHONPATH="$DEPS:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if ! python -c "import hydra, omegaconf, medmnist" 2>/dev/null; then
  python -m pip install --quiet --no-index --no-deps --target "$DEPS" "$WHEELS"/*
fi
python - > "$OUT/machine.txt" <<'PY'
import torch, pytorch_lightning
print(torch.cuda.get_device_name(0), "| torch", torch.__version__, "| lightning", pytorch_lightning.__version__)
PY
step() { echo "[gpu_check $(date +%T)] $*" | tee -a "$OUT/log.txt"; }

if [[ " $PARTS " == *" tests "* ]]; then
  step "GPU tests"
  python -m pytest -q -p no:cacheprovider tests/test_gpu.py > "$OUT/tests.txt" 2>&1
  tail -3 "$OUT/tests.txt" | tee -a "$OUT/log.txt"
fi
if [[ " $PARTS " == *" grid "* ]]; then
  step "grid benchmark: $BACKBONES"
  python scripts/bench.py --device cuda --parts grid --backbones $BACKBONES --json > "$OUT/grid.json" 2>> "$OUT/log.txt"
fi
if [[ " $PARTS " == *" concurrency "* ]]; then
  step "concurrency: 2 jobs sharing the GPU vs 1 (resnet densenet)"
  python scripts/bench.py --device cuda --parts concurrency --jobs 2 --backbones resnet densenet --json \
    > "$OUT/concurrency.json" 2>> "$OUT/log.txt"
fi
if [[ " $PARTS " == *" runs "* ]]; then
  for backbone in $BACKBONES; do
    step "trainer=gpu run: $backbone"
    run_dir=$(mktemp -d)/run
    start=$(date +%s)
    python train.py trainer=gpu performance.compile=true backbone="$backbone" trainer.max_epochs=3 \
      dataset.image_size=28 dataset.batch_size=128 dataset.source.num_train=4708 dataset.source.num_val=524 \
      dataset.source.num_test=624 trainer.enable_progress_bar=false "hydra.run.dir=$run_dir" > "$run_dir.log" 2>&1
    status=$?
    echo "{\"backbone\": \"$backbone\", \"exit\": $status, \"seconds\": $(( $(date +%s) - start )), \"metrics\": $(cat "$run_dir/metrics.json" 2>/dev/null || echo null)}" >> "$OUT/runs.jsonl"
    [ $status -eq 0 ] || tail -20 "$run_dir.log" >> "$OUT/log.txt"
  done
fi
step "done"
