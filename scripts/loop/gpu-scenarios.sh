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
#   bash scripts/loop/gpu-scenarios.sh start    # checks the box, starts the orchestrator, waits up to WAIT_S,
#                                               # copies what exists to $OUT
#   bash scripts/loop/gpu-scenarios.sh wait     # waits for the orchestrator to finish (up to WAIT_S), copies results to $OUT
# `start` fails within seconds, with the reason, when Node, the trainer's Python packages or the data are missing;
# `wait` returns as soon as the orchestrator has exited, finished or not (a dead run is never waited for).
# Prepare here: bash scripts/loop/pack-node.sh (→ .loopnode), data in .carry/data/{go,pubmedqa}/*.jsonl.gz
# (gzip of ../shared/data), trainer wheels in .whl; then `bash scripts/loop/gpu-scenarios.sh pack-src` (→
# .loopnode/src.tgz: the committed tree at HEAD, without tests, models and docs). When src.tgz is there, `start`
# runs the scenarios from that snapshot, not from the checkout that travelled with it, so uncommitted edits in the
# checkout never reach a run, and the summary records the commit. Carry .loopnode, .carry, .whl.
# The device copies the whole working tree besides the carried paths, and all of it must fit in 64 MiB: the
# tracked tree (~57 MiB with the test fixtures' models) plus .loopnode (~29 MiB) does not. Before the device calls:
#   bash scripts/loop/gpu-scenarios.sh carry     # sizes what would travel; if over 64 MiB, parks test/fixtures/models
#                                                # (not used by the scenarios) in .tmp/ (ignored, so it stays here)
#   bash scripts/loop/gpu-scenarios.sh uncarry   # after the last call: puts them back
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

fail() { say "FAILED: $*"; echo "$*" > "$WORK/FAILED"; exit 2; }

prepare() {
  . scripts/loop/node-env.sh
  loop_node_env || fail "the server's Node runtime cannot be set up (see above)"
  node --version >/dev/null 2>&1 || fail "node does not run here"
  # The server's whole static import graph must load from the bundle (a dependency added since the last
  # pack-node.sh would otherwise crash every server at start, after the run was detached).
  node --import tsx --input-type=module -e "await import('./src/server.ts')" 2>&1 | tail -n 3 | tee -a "$WORK/orchestrator.log" \
    || fail "the server's modules do not load here (re-run scripts/loop/pack-node.sh and carry .loopnode)"
  [ -f "$ROOT/.loopnode/src.commit" ] && say "source: $(cat "$ROOT/.loopnode/src.commit")"
  if [ -z "${LOOP_DRY_RUN:-}" ]; then
    python3 -c 'import datasets' 2>/dev/null || bash scripts/gpu/setup.sh 2>&1 | tee -a "$WORK/orchestrator.log"
    python3 -c 'import torch, sentence_transformers, datasets; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "st", sentence_transformers.__version__)' 2>&1 | tee -a "$WORK/orchestrator.log" \
      || fail "the trainer's Python packages do not import (carry .whl for scripts/gpu/setup.sh)"
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | tee -a "$WORK/orchestrator.log"
  fi
  # start's check unpacked the data already (marker .ready); the orchestrator it detaches does not do it again
  [ -f "$WORK/data/.ready" ] && return 0
  for d in go pubmedqa; do
    mkdir -p "$WORK/data/$d"
    for f in corpus queries.train queries.dev; do
      if [ -f ".carry/data/$d/$f.jsonl.gz" ]; then gunzip -c ".carry/data/$d/$f.jsonl.gz" > "$WORK/data/$d/$f.jsonl"
      elif [ -f "../shared/data/$d/$f.jsonl" ]; then cp "../shared/data/$d/$f.jsonl" "$WORK/data/$d/$f.jsonl"
      else fail "no $d/$f data: carry .carry/data (gzip of ../shared/data)"; fi
    done
    if [ -n "${LOOP_CORPUS_LIMIT:-}" ]; then head -n "$LOOP_CORPUS_LIMIT" "$WORK/data/$d/corpus.jsonl" > "$WORK/c.tmp" && mv "$WORK/c.tmp" "$WORK/data/$d/corpus.jsonl"; fi
  done
  touch "$WORK/data/.ready"
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
  echo $$ > "$WORK/orchestrator.pid"
  prepare
  say "orchestrator: scenarios $SCENARIOS, TRAIN_SEED=${TRAIN_SEED:-13 (default)}"
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

alive() { local pid; pid=$(cat "$WORK/orchestrator.pid" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

wait_done() {
  local until=$(( $(date +%s) + WAIT_S ))
  while [ ! -f "$WORK/DONE" ] && alive && [ "$(date +%s)" -lt "$until" ]; do sleep 5; done
  for s in $SCENARIOS; do tail -n 3 "$WORK/$s/driver.log" 2>/dev/null; done
  collect
  if [ -f "$WORK/DONE" ]; then echo "ALL DONE"
  elif alive; then echo "still running (call again with: wait)"
  else echo "FAILED: the orchestrator exited without finishing: $(cat "$WORK/FAILED" 2>/dev/null || tail -n 5 "$WORK/orchestrator.out" 2>/dev/null)"; return 1
  fi
}

# The committed tree at HEAD (no tests, models or docs: the checkout's models/ and test/ fixtures are linked in where it runs).
pack_src() {
  command -v git >/dev/null && git rev-parse HEAD >/dev/null 2>&1 || { echo "pack-src needs the git checkout" >&2; exit 2; }
  mkdir -p .loopnode && local tmp; tmp=$(mktemp -d)
  git archive HEAD | tar -x -C "$tmp" && rm -rf "$tmp/test" "$tmp/models" "$tmp/docs"
  tar -czf .loopnode/src.tgz -C "$tmp" . && rm -rf "$tmp"
  git log -1 --format='%H %s' > .loopnode/src.commit
  [ -z "$(git status --porcelain --untracked-files=no)" ] || echo "note: uncommitted changes are not in src.tgz" >&2
  echo "packed $(cat .loopnode/src.commit) ($(du -h .loopnode/src.tgz | cut -f1))"
}

# On the box: re-run this verb from the unpacked snapshot, with the checkout's bundles and models linked in.
from_snapshot() {
  local src=${LOOP_SRC_DIR:-/tmp/loop-src}
  rm -rf "$src" && mkdir -p "$src" && tar -xzf .loopnode/src.tgz -C "$src" || { echo "cannot unpack .loopnode/src.tgz" >&2; exit 2; }
  for p in .loopnode .carry .whl models test node_modules; do [ -e "$ROOT/$p" ] && ln -sfn "$ROOT/$p" "$src/$p"; done
  cd "$src" && LOOP_IN_SNAPSHOT=1 OUT=$OUT exec bash scripts/loop/gpu-scenarios.sh "$@"
}

# Bytes that a device call carrying .loopnode, .carry and .whl would copy.
carried_bytes() {
  { git ls-files -z; git ls-files -z -o --exclude-standard; find .loopnode .carry .whl -type f -print0 2>/dev/null; } \
    | du -cb --files0-from=- 2>/dev/null | tail -n 1 | cut -f1
}

carry() {
  local limit=$((64 * 1024 * 1024)) held=.tmp/held-fixtures-models
  [ -f .loopnode/node.tar.xz ] && [ -f .loopnode/src.tgz ] || { echo "no .loopnode bundle: run scripts/loop/pack-node.sh, then pack-src" >&2; exit 2; }
  local n; n=$(carried_bytes)
  if [ "$n" -gt "$limit" ] && [ -d test/fixtures/models ]; then
    mkdir -p .tmp && rm -rf "$held" && mv test/fixtures/models "$held"
    echo "parked test/fixtures/models in $held (run: $0 uncarry)"
    n=$(carried_bytes)
  fi
  echo "carried: $((n / 1024 / 1024)) MiB of 64"
  [ "$n" -le "$limit" ] || { echo "still over 64 MiB: see what else is tracked or untracked" >&2; exit 2; }
}

uncarry() {
  local held=.tmp/held-fixtures-models
  if [ -d "$held" ]; then
    [ -e test/fixtures/models ] && { echo "test/fixtures/models exists and $held too: resolve by hand" >&2; exit 2; }
    mv "$held" test/fixtures/models && echo "test/fixtures/models is back"
  else
    echo "nothing parked"
  fi
}

verb=${1:-run}
if [ -f .loopnode/src.tgz ] && [ -z "${LOOP_IN_SNAPSHOT:-}" ] && [ "$verb" != pack-src ] && [ "$verb" != wait ] \
  && [ "$verb" != carry ] && [ "$verb" != uncarry ]; then
  from_snapshot "$verb"
fi
case $verb in
  start)
    rm -rf "$WORK/DONE" "$WORK/FAILED" "$WORK/orchestrator.log" "$WORK/orchestrator.pid" "$WORK/data/.ready"
    # fail now, in this call, if the box cannot run the scenarios
    ( prepare ) || { echo "FAILED: $(cat "$WORK/FAILED" 2>/dev/null)"; cp "$WORK/orchestrator.log" "$OUT/" 2>/dev/null; exit 2; }
    setsid bash "$0" orchestrate > "$WORK/orchestrator.out" 2>&1 < /dev/null &
    for _ in 1 2 3 4 5 6 7 8 9 10; do [ -f "$WORK/orchestrator.pid" ] && break; sleep 1; done
    wait_done ;;
  wait) wait_done ;;
  orchestrate) orchestrate ;;
  run) rm -f "$WORK/DONE" "$WORK/data/.ready"; orchestrate; collect ;;
  pack-src) pack_src ;;
  carry) carry ;;
  uncarry) uncarry ;;
  *) echo "usage: $0 start|wait|run|pack-src|carry|uncarry"; exit 2 ;;
esac
