#!/usr/bin/env bash
# GPU check of the trainer (cold start, recipe sweep, candidate embeddings) on the device box, in under 4 minutes.
# Run from the repo root with $OUT set, carrying `.whl` (datasets wheels for scripts/gpu/setup.sh):
#   bash scripts/gpu/trainer-check.sh
# 1. the trainer's pytest suite (in the background; 4 xdist workers when pytest-xdist is there), -> $OUT/pytest.txt,
#    failing test names -> $OUT/pytest-failed.txt (also when the time limit stops it), $OUT/pytest-junit.xml
# 2. a cold-start sweep: empty pairs.jsonl, corpus pairs only, validation carved from the corpus, 2 lr x [2, 4]
#    epochs, greedy soup, embeddings of corpus.jsonl                                       -> $OUT/cold.*
# 3. a warm sweep: heading -> paragraph pairs with positive_id (validation carved from them), "auto" epochs,
#    greedy soup, embeddings                                                              -> $OUT/warm.*
# Both bundles are made by trainer/tests/make_check_bundle.py from this repository's Markdown and source comments
# with models/base (base-2): a plumbing check on real text and the real base, not a benchmark (~20 eval queries).
# $OUT/summary.txt gathers the non-progress events, the sweep sections and the embeddings manifests.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/trainer-check}; mkdir -p "$OUT"
W=$(mktemp -d /tmp/trainer-check.XXXXXX)
T0=$(date +%s)
S="$OUT/summary.txt"; : > "$S"
if ! python3 -c "import datasets" 2>/dev/null; then
  bash scripts/gpu/setup.sh > "$OUT/setup.txt" 2>&1
fi
python3 -c "import datasets, torch, sentence_transformers as st; print('datasets', datasets.__version__, 'torch', torch.__version__, 'st', st.__version__, 'cuda', torch.cuda.is_available())" >> "$S" 2>&1 \
  || { echo "datasets/torch/sentence-transformers not importable (carry .whl for setup.sh); see setup.txt" >> "$S"; cat "$S"; exit 1; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >> "$S" 2>&1

# 1. pytest, beside the two sweeps (niced: the sweeps' timings matter more)
# (PYTEST=0 skips it; PYTEST_LIMIT seconds, default 200, keeps the whole check under 4 minutes: without xdist the
# suite may not finish in that time on the device, and what it did is in pytest.txt all the same)
XD=""; python3 -c "import xdist" 2>/dev/null && XD="-n 4"
# pytest with SIGINT as KeyboardInterrupt: a background job of a non-interactive shell starts with SIGINT ignored,
# and Python keeps it ignored, so `timeout --signal=INT` alone would not stop it
PYTEST_INT='import signal, sys, pytest; signal.signal(signal.SIGINT, signal.default_int_handler); sys.exit(pytest.main(sys.argv[1:]))'
PT=""
if [ "${PYTEST:-1}" = 1 ]; then
  # the names of failing tests must survive the time limit: -rfE lists failures and errors in the summary,
  # `timeout --signal=INT` makes pytest stop as on Ctrl-C and still print that summary (with xdist too; KILL
  # follows 20 s later), --junitxml records every finished test, and each FAILED/ERROR line of the -v progress
  # is copied to pytest-failed.txt as it happens (so a run killed outright still names them)
  ( s=$(date +%s); timeout --signal=INT --kill-after=20 "${PYTEST_LIMIT:-200}" nice -n 10 python3 -c "$PYTEST_INT" -v -rfE \
      --durations=15 $XD -p no:cacheprovider --junitxml="$OUT/pytest-junit.xml" trainer/tests 2>&1 \
      | tee "$OUT/pytest.txt" | grep --line-buffered -E '(FAILED|ERROR)( |$)' > "$OUT/pytest-failed.txt"
    echo "rc=${PIPESTATUS[0]} wall=$(( $(date +%s) - s ))s xdist='$XD'" >> "$OUT/pytest.txt" ) &
  PT=$!
fi

run_sweep() {  # NAME MAKE_BUNDLE_ARGS... ; trains $W/NAME into $W/m-NAME
  local name=$1; shift
  python3 -m trainer.tests.make_check_bundle --out "$W/$name" "$@" >> "$S" 2>&1
  local s=$(date +%s)
  # each run gets at most 150 s and the two together end by 225 s after the start (the check stays under 4 minutes)
  local left=$(( 225 - (s - T0) )); [ $left -gt 150 ] && left=150; [ $left -lt 30 ] && left=30
  timeout $left python3 -m trainer train "$W/$name" "$W/m-$name" > "$OUT/$name.jsonl" 2> "$OUT/$name.err"
  echo "== $name: rc=$? wall=$(( $(date +%s) - s ))s (limit ${left}s)" >> "$S"
  grep -v '"event": "progress"' "$OUT/$name.jsonl" | cut -c1-600 >> "$S"
  tail -2 "$OUT/$name.err" >> "$S"
  if [ -d "$W/m-$name" ]; then
    cp "$W/m-$name/train_report.json" "$OUT/$name.train_report.json"
    cp "$W/m-$name/embeddings/manifest.json" "$OUT/$name.embeddings_manifest.json" 2>/dev/null
    python3 - "$W/m-$name" >> "$S" 2>&1 <<'EOF'
import json, sys
import numpy as np
from trainer.embed_corpus import read_embeddings
d = sys.argv[1]
rep = json.load(open(f"{d}/train_report.json"))
sw = rep["sweep"]
print("sweep:", json.dumps({k: sw[k] for k in ("space", "train_rows", "validation", "select", "chosen", "val_ndcg@10",
                                                "selection_seconds", "concurrency", "train_wall_seconds")}))
for m in sw["members"]:
    print(f"  member {m['member']}: lr {m['lr']:g} epochs {m['epochs']} steps {m['steps']} "
          f"train {m['train_seconds']:.1f}s val ndcg@10 {m['val']['ndcg@10']:.4f}")
print("eval ndcg@10 before/after:", round(rep["eval_before"]["ndcg@10"], 4), round(rep["eval_after"]["ndcg@10"], 4),
      "samples/s", rep["samples_per_second"], "wall", rep["wall_seconds"])
ids, vec = read_embeddings(f"{d}/embeddings")  # checks both sha256s against the manifest
m = rep["embeddings"]
print("embeddings:", m["count"], "x", m["dim"], m["dtype_compute"], "on", m["device"], f"{m['seconds']}s",
      "fp32_check", m["fp32_check"], "norms", float(np.linalg.norm(vec, axis=1).min()), float(np.linalg.norm(vec, axis=1).max()))
EOF
  fi
}

# 2. cold start
run_sweep cold --cold --job '{"gpu":"required","corpus_pairs":{"group":1,"ict":2},"sweep":{"epochs":[2,4]},"embed_corpus":true}'
# 3. warm: ~30 anchors with positive_id (val_min_anchors 20 so that they, not the corpus, give the validation queries)
run_sweep warm --job '{"gpu":"required","corpus_pairs":{"group":1,"ict":1},"sweep":{"val_fraction":0.3,"val_min_anchors":20},"embed_corpus":true}'

if [ -n "$PT" ]; then
  wait $PT
  echo "== pytest" >> "$S"; grep -E '^(FAILED|ERROR) ' "$OUT/pytest.txt" | sort -u >> "$S"
  echo "-- failures seen as they happened:" >> "$S"; sort -u "$OUT/pytest-failed.txt" | cut -c1-300 >> "$S"
  tail -25 "$OUT/pytest.txt" >> "$S"
fi
echo "all done in $(( $(date +%s) - T0 ))s" >> "$S"
rm -rf "$W"
cat "$S"
