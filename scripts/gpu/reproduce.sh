#!/usr/bin/env bash
# Reproduces the result tables of trainer/RESULTS.md and models/README.md on a GPU machine (CUDA, torch,
# sentence-transformers; `bash scripts/gpu/setup.sh` installs the missing `datasets` wheels from .whl/).
#
#   bash scripts/gpu/reproduce.sh TABLE [TABLE...]     results in $OUT/TABLE/ (default OUT=/tmp/reproduce)
#
# TABLE             what it runs                                                       RESULTS.md table
# tiny              the test encoder (test/fixtures/models/tiny), tiny-ft-go, tiny-bad  GO dev (fixture rows)
# base-1            pretrain the base encoder from scratch (MLM 150 s, contrastive 120 s) base pretraining
# base-2            continue base-1 at 256 tokens (MLM 80 s, contrastive 160 s)       base-2 / models/README.md
# go                fine-tune BASE on GO train: 1 epoch, bs 256, lr 3e-4, 128 tokens    GO dev, training speed
# pubmedqa          fine-tune BASE on PubMedQA with the product recipe: corpus pairs     PubMedQA dev
#                   (group 3 + ict 2), hardness 5, soup of 4 seeds from SEED, 10 epochs
# pytest            the trainer's test suite                                           trainer/tests/RESULTS.md
#
# DATA (default .carry/data: the GO and PubMedQA splits, corpora and WordNet glosses of scripts/gpu/prep_data.py),
# BASE (default models/base), SEED (default 42), EPOCHS / HARD / SOUP (10 / 5 / 4) apply where they make sense.
# Soups are scored by scripts/gpu/soup.py, BM25 + encoder fusion by scripts/gpu/hybrid_eval.py.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/reproduce}
DATA=${DATA:-.carry/data}
BASE=${BASE:-models/base}
SEED=${SEED:-42}
[ $# -gt 0 ] || { sed -n '2,19p' "$0"; exit 2; }
bash scripts/gpu/setup.sh

train() { # train NAME DATASET JOB_JSON [make_bundle args...]: bundle + `python -m trainer train`, wall time
  local name=$1 ds=$2 job=$3 o=$OUT/$1; shift 3
  mkdir -p "$o"
  python3 scripts/gpu/make_bundle.py --dataset "$ds" --data "$DATA" --base "$BASE" --out "$o/bundle" --job "$job" "$@"
  local s; s=$(date +%s)
  python3 -m trainer train "$o/bundle" "$o/model" 2>"$o/train.err" | grep -v '"progress"' > "$o/train.jsonl"
  echo "{\"event\":\"process_wall_seconds\",\"rc\":${PIPESTATUS[0]},\"s\":$(( $(date +%s) - s ))}" >> "$o/train.jsonl"
}

for table in "$@"; do
  mkdir -p "$OUT/$table"
  case $table in
    tiny)
      python3 scripts/gpu/pretrain.py --preset tiny --data "$DATA" --out "$OUT/tiny/tiny" --version tiny-1 --mlm-seconds 40 --mnrl-seconds 40 --eval \
        | grep -v '"progress"' > "$OUT/tiny/pretrain.jsonl"
      JOB='{"batch_size":256,"epochs":1,"lr":1e-3,"seed":42,"max_seq_length":64,"version":"VERSION","gpu":"required"}'
      BASE=test/fixtures/models/tiny train tiny/ft-go go "${JOB/VERSION/tiny-ft-go-1}"
      BASE=test/fixtures/models/tiny train tiny/bad go "${JOB/VERSION/tiny-bad-1}" --shuffle-positives
      python3 scripts/gpu/st_fixture.py --model "$OUT/tiny/ft-go/model" --out "$OUT/tiny/st_ir_fixture.json" ;;
    base-1)
      python3 scripts/gpu/pretrain.py --preset base --data "$DATA" --out "$OUT/base-1/model" --version base-1 \
        --mlm-seconds 150 --mnrl-seconds 120 --eval --fp16-weights | grep -v '"progress"' > "$OUT/base-1/pretrain.jsonl" ;;
    base-2)
      python3 scripts/gpu/pretrain.py --preset base --data "$DATA" --init "${INIT:-$OUT/base-1/model}" --out "$OUT/base-2/model" --version base-2 \
        --mlm-len 256 --pair-len 256 --mlm-seconds 80 --mnrl-seconds 160 --seed 42 --eval --fp16-weights \
        | grep -v '"progress"' > "$OUT/base-2/pretrain.jsonl" ;;
    go)
      train go go '{"batch_size":256,"epochs":1,"lr":3e-4,"seed":'"$SEED"',"max_seq_length":128,"version":"base-ft-go","gpu":"required"}' ;;
    pubmedqa)
      train pubmedqa pubmedqa '{"max_seq_length":256,"gpu":"required","dataloader_workers":3,"batch_size":256,"lr":8e-4,
        "epochs":'"${EPOCHS:-10}"',"seed":'"$SEED"',"corpus_pairs":{"group":3,"ict":2},
        "hardness":{"mode":"in_batch_negatives","strength":'"${HARD:-5}"'},"soup":'"${SOUP:-4}"',"version":"base-ft-pubmedqa"}' --group-field pmid ;;
    pytest)
      python3 -m pytest -q trainer/tests > "$OUT/pytest/pytest.txt" 2>&1; echo "rc=$?" >> "$OUT/pytest/pytest.txt" ;;
    *) echo "unknown table: $table (see: bash $0)"; exit 2 ;;
  esac
  echo "$table: $OUT/$table"
done
