#!/usr/bin/env bash
# The real self-tuning loop on the GPU box, no human step: server (TRAINER_BACKEND=local) + GO corpus +
# BP traffic then MF/CC traffic with feedback → the server's drift monitor fires → job mines pairs →
# `python3 -m trainer train` on the GPU (MNRL) → gate → shadow re-embed → swap, under a search load.
#
# Prepare here (once):   bash scripts/loop/pack-node.sh        # → .loopnode/ (Node binary + pruned node_modules)
# Run there via the device tool, from the repo root, carrying .loopnode, .carry/data/go and .whl (the
# trainer's `datasets` wheels, see scripts/gpu/setup.sh):
#   bash scripts/loop/gpu-loop.sh          (writes $OUT/summary.json, $OUT/server.log, $OUT/replay.log)
# Dry run on a CPU box:  LOOP_DRY_RUN=1 bash scripts/loop/gpu-loop.sh  (the `command` backend returns the
#   trained fixture tiny-ft-go instead of running torch; without node_modules in the checkout, or with
#   LOOP_USE_BUNDLE=1, it runs on the carried bundle exactly as the GPU box will)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/.tmp/loop-out}
WORK=${LOOP_WORK:-/tmp/loop}
mkdir -p "$OUT" "$WORK"
# LOOP_KEEP_DATA=1 reuses an indexed DATA_DIR from an earlier run (skips the ingest).
[ -n "${LOOP_KEEP_DATA:-}" ] || rm -rf "$WORK/srv"
T0=$(date +%s)
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$OUT/replay.log" >&2; }
. scripts/loop/node-env.sh
loop_node_env || exit 2
if [ -z "${LOOP_DRY_RUN:-}" ]; then
  export TRAINER_BACKEND=local TRAINER_PYTHON=${TRAINER_PYTHON:-python3}
  # The trainer needs `datasets`, which the box's image lacks: install the wheels carried in .whl/
  # (scripts/gpu/setup.sh, the trainer's own device setup). Fail here, not minutes later inside the job.
  if ! python3 -c 'import datasets' 2>/dev/null; then
    [ -d .whl ] || { say "python3 lacks 'datasets' and no .whl/ was carried (carry .whl: scripts/gpu/setup.sh)"; exit 2; }
    bash scripts/gpu/setup.sh 2>&1 | tee -a "$OUT/replay.log"
  fi
  python3 -c 'import torch, sentence_transformers, datasets; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "st", sentence_transformers.__version__, "datasets", datasets.__version__)' 2>&1 | tee -a "$OUT/replay.log" \
    || { say "the trainer's Python dependencies are missing"; exit 2; }
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | tee -a "$OUT/replay.log"
else
  # CPU dry run: the `command` backend returns an artifact the real trainer made (no torch here).
  export TRAINER_BACKEND=command
  export TRAINER_COMMAND="echo dry-run trainer >&2; mkdir -p {out} && cp -R '$ROOT/${LOOP_DRY_FIXTURE:-test/fixtures/models/tiny-ft-go}'/. {out}/ # {bundle}"
fi
node --version | tee -a "$OUT/replay.log"

# --- GO data: the repo's gzipped copy (carried), else ../shared/data/go
DATA="$WORK/data/go"
mkdir -p "$DATA"
for f in corpus queries.train queries.dev; do
  if [ -f ".carry/data/go/$f.jsonl.gz" ]; then gunzip -c ".carry/data/go/$f.jsonl.gz" > "$DATA/$f.jsonl"
  elif [ -f "../shared/data/go/$f.jsonl" ]; then cp "../shared/data/go/$f.jsonl" "$DATA/$f.jsonl"
  else say "missing GO data ($f)"; exit 2; fi
done
if [ -n "${LOOP_CORPUS_LIMIT:-}" ]; then head -n "$LOOP_CORPUS_LIMIT" "$DATA/corpus.jsonl" > "$DATA/c.tmp" && mv "$DATA/c.tmp" "$DATA/corpus.jsonl"; fi

# --- the base encoder: the tiny test encoder by default. Every step that embeds the corpus (ingest, gate,
# shadow re-embed) runs on the box's CPUs, and the whole run must fit one 10-minute device call;
# LOOP_MODEL_DIR=models/base runs the 4x256 base model instead when there is more time.
MODEL=${LOOP_MODEL_DIR:-test/fixtures/models/tiny}
CORES=$(nproc)
# Auth stays on, as in production: the driver acts with an admin key minted for this run.
export ADMIN_API_KEY="$(node -e "process.stdout.write('rk_' + require('crypto').randomBytes(32).toString('base64url'))")"
export LOOP_API_KEY="$ADMIN_API_KEY"
export DATA_DIR="$WORK/srv" MODEL_DIR="$MODEL" PORT=${PORT:-$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{process.stdout.write(String(s.address().port));s.close()})")} HOST=127.0.0.1 LOG_LEVEL=info \
  EMBED_WORKERS=${EMBED_WORKERS:-$(( CORES > 8 ? 4 : 1 ))} INDEX_WORKERS=${INDEX_WORKERS:-2} EMBED_MAX_BATCH=64 \
  DRIFT_INTERVAL_SECONDS=${DRIFT_INTERVAL_SECONDS:-20} DRIFT_WINDOW=${DRIFT_WINDOW:-1000} DRIFT_MIN_QUERIES=${DRIFT_MIN_QUERIES:-500} \
  DRIFT_AUC_THRESHOLD=${DRIFT_AUC_THRESHOLD:-0.75} DRIFT_COOLDOWN_SECONDS=3600 AUTO_RETRAIN=true TRAINER_TIMEOUT_SECONDS=${TRAINER_TIMEOUT_SECONDS:-300} \
  TRAIN_BATCH_SIZE=${TRAIN_BATCH_SIZE:-256} TRAIN_EPOCHS=${TRAIN_EPOCHS:-3} TRAIN_LR=${TRAIN_LR:-1e-4} \
  REEMBED_BATCH=256 REEMBED_PAUSE_MS=${REEMBED_PAUSE_MS:-0} SNAPSHOT_EVERY_SECONDS=600 QUERY_LOG_FLUSH_MS=100
say "server: model=$MODEL backend=$TRAINER_BACKEND embed_workers=$EMBED_WORKERS cores=$CORES"
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then say "port $PORT is already in use"; exit 2; fi
node --import tsx src/main.ts > "$OUT/server.log" 2>&1 &
SERVER=$!
stop_server() { kill "$SERVER" 2>/dev/null; for _ in $(seq 50); do kill -0 "$SERVER" 2>/dev/null || return 0; sleep 0.2; done; kill -9 "$SERVER" 2>/dev/null; }
trap stop_server EXIT

node --import tsx scripts/loop/replay.ts --url "http://127.0.0.1:$PORT" --data "$DATA" --out "$OUT/summary.json" \
  --bp "${LOOP_BP:-4000}" --shift "${LOOP_SHIFT:-8000}" --dev "${LOOP_DEV:-1000}" --concurrency "${LOOP_CONCURRENCY:-8}" \
  --job-timeout "${LOOP_JOB_TIMEOUT:-420}" --deadline $(( (T0 + ${LOOP_DEADLINE_S:-560}) * 1000 )) ${LOOP_KEEP_DATA:+--skip-ingest} 2>&1 | tee -a "$OUT/replay.log"
RC=${PIPESTATUS[0]}
# The trainer's own report, for the record (the job dir holds the bundle; models/ the artifact).
find "$WORK/srv/models" -maxdepth 2 -name train_report.json -exec cp {} "$OUT/train_report.json" \; 2>/dev/null
stop_server
# Keep what comes back small: the tail of the server log is where a failure shows.
tail -n 400 "$OUT/server.log" > "$OUT/server.tail.log" && rm -f "$OUT/server.log"
say "done rc=$RC"
exit $RC
