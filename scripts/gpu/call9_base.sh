#!/usr/bin/env bash
# Device call 9: does more pretraining of the base encoder lift fine-tuned PubMedQA? One variant per GPU
# (nvidia-h100-x4): pretrain (scripts/gpu/pretrain.py, mostly continuing models/base with sequences of 256 tokens,
# which base-1 never saw past 128), then the call-7 product recipe (soup of 4, hardness 5, 10 epochs) on top.
# Arguments: TAG:INIT:MLM_S:MNRL_S:PRETRAIN_SEED:SOUP_SEED (INIT = 1 to continue models/base, 0 from scratch).
# Results: $OUT/summary.txt, $OUT/logs.tgz (every variant's logs and reports), and the base of the variant whose soup
# scored best: $OUT/best_pt.tgz (pytorch/, fp16) + $OUT/best_onnx.tgz (int8 ONNX, tokenizer, card).
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
T0=$(date +%s)
bash scripts/gpu/setup.sh > $OUT/summary.txt 2>&1
NG=$(nvidia-smi -L | wc -l)
i=0
for spec in "$@"; do
  IFS=: read -r TAG INIT MLM MNRL PS SS <<< "$spec"
  W=/tmp/w9-$TAG; rm -rf $W; mkdir -p $W/o
  ( export CUDA_VISIBLE_DEVICES=$(( i % NG )) OMP_NUM_THREADS=4
    INITARG=""; [ "$INIT" = 1 ] && INITARG="--init models/base"
    timeout ${PRETRAIN_LIMIT:-330} python3 scripts/gpu/pretrain.py --preset base $INITARG --mlm-len 256 --pair-len 256 \
      --mlm-seconds $MLM --mnrl-seconds $MNRL --seed $PS --version base-2-$TAG --eval --fp16-weights --out $W/base \
      2>$W/pretrain.err | grep -v '"progress"' > $W/o/pretrain.jsonl
    echo "{\"event\":\"pretrain_done\",\"at\":$(( $(date +%s) - T0 ))}" >> $W/o/pretrain.jsonl
    # (JOBOUT before W: in one command's assignments, a later one sees the earlier ones; the first run had W
    # first, so the fine-tunes' results landed in $W/ft/o and were fetched from the warm machine afterwards)
    BASE=$W/base SEED=$SS JOBOUT=$W/o W=$W/ft PYTEST=0 LIMIT=${FT_LIMIT:-260} bash scripts/gpu/call7_pubmedqa.sh
    cp $W/pretrain.err $W/o/ 2>/dev/null ) &
  i=$(( i + 1 ))
done
wait
best=""; bestv=0
for spec in "$@"; do
  TAG=${spec%%:*}; W=/tmp/w9-$TAG
  echo "== $spec" >> $OUT/summary.txt
  python3 - $W/o/pretrain.jsonl >> $OUT/summary.txt <<'PY'
import json, sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e.get("event") == "eval":  # the base's dev metrics, before fine-tuning
        print(json.dumps({"event": "base_eval", **{ds: {k: round(v, 4) for k, v in m.items() if k in ("ndcg@10", "recall@10", "mrr@10")}
                                                  for ds, m in e.items() if ds != "event"}}))
    elif e.get("event") in ("init", "tokenizer", "phase_done", "done", "pretrain_done"):
        e.pop("loss_curve", None)
        print(json.dumps(e)[:300])
PY
  grep -E '"when": "(member|after|int8)"|"event": "(done|error)"|process_wall|rror' $W/o/summary.txt | cut -c1-300 >> $OUT/summary.txt
  v=$(python3 -c "
import json
s=[json.loads(l) for l in open('$W/o/train.jsonl') if '\"when\": \"after\"' in l]
print(s[-1]['ndcg@10'] if s else 0)" 2>/dev/null)
  echo "soup ndcg@10 $TAG = $v" >> $OUT/summary.txt
  if python3 -c "import sys; sys.exit(0 if float('${v:-0}') > float('$bestv') else 1)"; then best=$TAG; bestv=$v; fi
done
echo "best: $best $bestv" >> $OUT/summary.txt
(cd /tmp && tar czf $OUT/logs.tgz w9-*/o)
if [ -n "$best" ]; then
  B=/tmp/w9-$best/base
  (cd $B && tar czf $OUT/best_pt.tgz pytorch && tar czf $OUT/best_onnx.tgz onnx/model_quantized.onnx config.json tokenizer.json tokenizer_config.json model_card.json)
fi
echo "all done at $(( $(date +%s) - T0 ))s" >> $OUT/summary.txt
