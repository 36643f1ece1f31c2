#!/usr/bin/env bash
# Device call 10: confirm the continued-pretraining base (call 9 variant c, carried in .carry/base2) on fresh seeds,
# and measure GO with it. nvidia-h100-x4: GPUs 0-2 run the call-7 PubMedQA recipe (soup of 4, hardness 5,
# 10 epochs) with SEED 1000 / 2000 / 3000 (call 9 used 42); GPU 3 runs the default GO job (call 3's: 1 epoch,
# bs 256, lr 3e-4, max_seq_length 128); then the trainer's pytest suite, alone.
# Results: $OUT/summary.txt, $OUT/pm.tgz, $OUT/go.tgz, $OUT/pytest.txt.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
T0=$(date +%s)
B=${BASE:-.carry/base2}
bash scripts/gpu/setup.sh > $OUT/summary.txt 2>&1
i=0
for s in 1000 2000 3000; do
  ( CUDA_VISIBLE_DEVICES=$i BASE=$B SEED=$s W=/tmp/w10-$s JOBOUT=/tmp/o10-$s PYTEST=0 LIMIT=330 bash scripts/gpu/call7_pubmedqa.sh ) &
  i=$(( i + 1 ))
done
( export CUDA_VISIBLE_DEVICES=3 OMP_NUM_THREADS=4; W=/tmp/w10-go; rm -rf $W; mkdir -p $W
  python3 scripts/gpu/make_bundle.py --dataset go --base $B --out $W/b --job \
    '{"batch_size":256,"epochs":1,"lr":3e-4,"seed":42,"max_seq_length":128,"version":"base-2-ft-go","gpu":"required"}' > $W/bundle.txt
  S=$(date +%s)
  timeout ${GO_LIMIT:-420} python3 -m trainer train $W/b $W/m 2>$W/train.err | grep -v '"progress"' > $W/go.jsonl
  echo "{\"event\":\"process_wall_seconds\",\"rc\":$?,\"s\":$(( $(date +%s) - S ))}" >> $W/go.jsonl
  (cd $W && tar czf $OUT/go.tgz go.jsonl train.err m/train_report.json m/model_card.json 2>/dev/null) ) &
wait
# pytest last and alone (in calls 8 and 10 it stopped after 38 tests: trainer/tests/RESULTS.md)
S=$(date +%s); OMP_NUM_THREADS=8 timeout ${PYTEST_LIMIT:-240} python3 -m pytest -q trainer/tests > $OUT/pytest.txt 2>&1
echo "rc=$? wall=$(( $(date +%s) - S ))s" >> $OUT/pytest.txt
for s in 1000 2000 3000; do
  echo "== pubmedqa seed $s" >> $OUT/summary.txt
  grep -E '"when": "(before|member|after|int8)"|"event": "(done|error)"|process_wall|rror' /tmp/o10-$s/summary.txt | cut -c1-400 >> $OUT/summary.txt
done
echo "== go" >> $OUT/summary.txt
grep -E '"when": "(before|after|int8)"|"event": "(done|error)"|process_wall|rror' /tmp/w10-go/go.jsonl | cut -c1-600 >> $OUT/summary.txt
tail -3 $OUT/pytest.txt >> $OUT/summary.txt
(cd /tmp && tar czf $OUT/pm.tgz o10-*)
echo "all done at $(( $(date +%s) - T0 ))s" >> $OUT/summary.txt
