#!/usr/bin/env bash
# The self-tuning scenarios on the GPU box, each on its own server with default settings (TRAINER_BACKEND=local:
# the job runs `python3 -m trainer train` on the GPU), driven by scripts/loop/scenario.ts:
#   go        GO, BP → MF/CC traffic shift with feedback; the drift monitor creates the job
#   pubmedqa  PubMedQA, every train question with feedback, then POST /retrain
#   cold-go, cold-pubmedqa   no queries at all: POST /retrain right after ingest (corpus-made pairs only)
# Settings are the defaults but for DRIFT_INTERVAL_SECONDS (120 instead of 300, the same for every scenario, so
# that a run takes minutes) and the ports and directories.
# Everything runs under one detached orchestrator (setsid), so the run can span two device calls of at most
# 10 minutes each:
#   bash scripts/loop/gpu-scenarios.sh start    # starts the orchestrator, waits up to WAIT_S, copies what exists to $OUT
#   bash scripts/loop/gpu-scenarios.sh wait     # waits for the orchestrator to finish (up to WAIT_S), copies results to $OUT
# Prepare here: bash scripts/loop/pack-node.sh (→ .loopnode), data in .carry/data/{go,pubmedqa}/*.jsonl.gz
# (gzip of ../shared/data), trainer wheels in .whl; carry .loopnode, .carry, .whl.
# CPU dry run: LOOP_DRY_RUN=1 SCENARIOS=pubmedqa bash scripts/loop/gpu-scenarios.sh run (command backend copies
# the trainer-made fixture test/fixtures/models/tiny-ft-go; no torch needed).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/.tmp/scenarios-out}
WORK=${LOOP_WORK:-/tmp/scenarios}
WAIT_S=${WAIT_S:-540}
SCENARIOS=${SCENARIOS:-go pubmedqa cold-pubmedqa}
mkdir -p "$OUT" "$WORK"
T0=$(date +%s)
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$WORK/orchestrator.log" >&2; }

collect() {
  for s in $SCENARIOS; do
    for f in summary.json state.json driver.log; do [ -f "$WORK/$s/$f" ] && cp "$WORK/$s/$f" "$OUT/$s.$f"; done
    [ -f "$WORK/$s/server.log" ] && tail -n 300 "$WORK/$s/server.log" > "$OUT/$s.server.tail.log"
    find "$WORK/$s/srv/models" -maxdepth 2 -name train_report.json -exec cp {} "$OUT/$s.train_report.json" \; 2>/dev/null
  done
  cp "$WORK/orchestrator.log" "$OUT/" 2>/dev/null
  # At most 8 files come back from a device call: pack everything into one archive as well.
  tar -C "$OUT" -czf "$WORK/results.tgz" --exclude=results.tgz . 2>/dev/null && mv "$WORK/results.tgz" "$OUT/results.tgz"
  find "$OUT" -type f ! -name results.tgz ! -name orchestrator.log -delete
}

prepare() {
  . scripts/loop/node-env.sh
  loop_node_env || exit 2
  if [ -z "${LOOP_DRY_RUN:-}" ]; then
    python3 -c 'import datasets' 2>/dev/null || bash scripts/gpu/setup.sh 2>&1 | tee -a "$WORK/orchestrator.log"
    python3 -c 'import torch, sentence_transformers, datasets; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "st", sentence_transformers.__version__)' 2>&1 | tee -a "$WORK/orchestrator.log"
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | tee -a "$WORK/orchestrator.log"
  fi
  for d in go pubmedqa; do
    mkdir -p "$WORK/data/$d"
    for f in corpus queries.train queries.dev; do
      if [ -f ".carry/data/$d/$f.jsonl.gz" ]; then gunzip -c ".carry/data/$d/$f.jsonl.gz" > "$WORK/data/$d/$f.jsonl"
      else cp "../shared/data/$d/$f.jsonl" "$WORK/data/$d/$f.jsonl"; fi
    done
    if [ -n "${LOOP_CORPUS_LIMIT:-}" ]; then head -n "$LOOP_CORPUS_LIMIT" "$WORK/data/$d/corpus.jsonl" > "$WORK/c.tmp" && mv "$WORK/c.tmp" "$WORK/data/$d/corpus.jsonl"; fi
  done
}

free_port() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{process.stdout.write(String(s.address().port));s.close()})"; }

# One scenario: a server with default settings (only ports, paths, logging and the drift check's period set)
# and the driver's two phases.
scenario() {
  local s=$1 data=$2 kind=$3 workers=$4
  local dir="$WORK/$s"
  rm -rf "$dir" && mkdir -p "$dir"
  local port; port=$(free_port)
  local key; key="rk_$(node -e "process.stdout.write(require('crypto').randomBytes(24).toString('hex'))")"
  (
    export DATA_DIR="$dir/srv" PORT=$port HOST=127.0.0.1 ADMIN_API_KEY=$key LOG_LEVEL=info EMBED_WORKERS=$workers \
      DRIFT_INTERVAL_SECONDS=${DRIFT_INTERVAL_SECONDS:-120} TRAINER_TIMEOUT_SECONDS=1500
    if [ -n "${LOOP_DRY_RUN:-}" ]; then
      export TRAINER_BACKEND=command TRAINER_COMMAND="mkdir -p {out} && cp -R '$ROOT/${LOOP_DRY_FIXTURE:-test/fixtures/models/tiny-ft-go}'/. {out}/ # {bundle}"
      export MODEL_DIR=${LOOP_DRY_MODEL:-test/fixtures/models/tiny}
    fi
    exec node --import tsx src/main.ts
  ) > "$dir/server.log" 2>&1 &
  local srv=$!
  say "$s: server pid $srv port $port"
  LOOP_API_KEY=$key node --import tsx scripts/loop/scenario.ts --url "http://127.0.0.1:$port" --data "$data" --scenario "$kind" --collection "${kind}" \
    --phase all --state "$dir/state.json" --out "$dir/summary.json" --dev "${LOOP_DEV:-1000}" > "$dir/driver.log" 2>&1
  say "$s: driver exited $?"
  kill "$srv" 2>/dev/null; sleep 2; kill -9 "$srv" 2>/dev/null
}

orchestrate() {
  prepare
  say "orchestrator: scenarios $SCENARIOS"
  local pids=()
  for s in $SCENARIOS; do
    case $s in
      go) scenario go "$WORK/data/go" go 4 & ;;
      pubmedqa) scenario pubmedqa "$WORK/data/pubmedqa" pubmedqa 2 & ;;
      cold-go) scenario cold-go "$WORK/data/go" cold 4 & ;;
      cold-pubmedqa) scenario cold-pubmedqa "$WORK/data/pubmedqa" cold 2 & ;;
    esac
    pids+=($!)
  done
  wait "${pids[@]}"
  say "orchestrator: done"
  touch "$WORK/DONE"
}

wait_done() {
  local until=$(( $(date +%s) + WAIT_S ))
  while [ ! -f "$WORK/DONE" ] && [ "$(date +%s)" -lt "$until" ]; do sleep 5; done
  for s in $SCENARIOS; do tail -n 3 "$WORK/$s/driver.log" 2>/dev/null; done
  collect
  [ -f "$WORK/DONE" ] && echo "ALL DONE" || echo "still running (call again with: wait)"
}

case ${1:-run} in
  start)
    rm -rf "$WORK/DONE" "$WORK/orchestrator.log"
    setsid bash "$0" orchestrate > "$WORK/orchestrator.out" 2>&1 < /dev/null &
    sleep 2
    wait_done ;;
  wait) wait_done ;;
  orchestrate) orchestrate ;;
  run) rm -f "$WORK/DONE"; orchestrate; collect ;;
  *) echo "usage: $0 start|wait|run"; exit 2 ;;
esac
