#!/usr/bin/env bash
# Device call 5: recipe M (group 3 + ict 2, bs 256, lr 8e-4) for 10 epochs, 8 trainers concurrently on the one GPU:
# four seeds (for weight-averaged soups, scripts/gpu/soup.py) and four loss shapes at seed 42 (GTE directions,
# symmetric per-direction, in-batch hardness weighting, scale 30). Results: $OUT/summary.txt, $OUT/call5.tgz.
set -uo pipefail
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 RAYON_NUM_THREADS=2
OUT=${OUT:-/tmp/out}; W=/tmp/w5; rm -rf $W; mkdir -p $OUT $W/logs
T0=$(date +%s)
bash scripts/gpu/setup.sh > $W/logs/env.txt 2>&1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >> $W/logs/env.txt
C='"max_seq_length":256,"gpu":"required","dataloader_workers":1,"batch_size":256,"lr":8e-4,"epochs":10,"corpus_pairs":{"group":3,"ict":2}'
mk() { local n=$1 j=$2; python3 scripts/gpu/make_bundle.py --dataset pubmedqa --base models/base --group-field pmid --out $W/b-$n \
  --job "{$C,$j,\"version\":\"pm5-$n\"}" >> $W/logs/bundles.txt; }
mk s42 '"seed":42'; mk s7 '"seed":7'; mk s1 '"seed":1'; mk s2 '"seed":2'
mk gte '"seed":42,"directions":["query_to_doc","query_to_query","doc_to_query","doc_to_doc"]'
mk sym '"seed":42,"directions":["query_to_doc","doc_to_query"],"partition_mode":"per_direction"'
mk hard '"seed":42,"hardness":{"mode":"in_batch_negatives","strength":5}'
mk sc30 '"seed":42,"scale":30'
V="s42 s7 s1 s2 gte sym hard sc30"
for n in $V; do
  (S=$(date +%s); timeout ${LIMIT:-420} python3 -m trainer train $W/b-$n $W/m-$n 2>$W/logs/$n.err | grep -v '"progress"' > $W/logs/$n.log
   echo "{\"event\":\"process_wall_seconds\",\"name\":\"$n\",\"s\":$(( $(date +%s) - S ))}" >> $W/logs/$n.log) &
done
wait
echo "trained at $(( $(date +%s) - T0 ))s" >> $W/logs/env.txt
soup() { local ms=(); for n in "$@"; do [ -d $W/m-$n ] && ms+=($W/m-$n/pytorch); done
  timeout 60 python3 scripts/gpu/soup.py --no-singles --bundle $W/b-s42 --models "${ms[@]}" 2>>$W/logs/soup.err | grep '"event"'; }
{ soup s42 s7; soup s42 s7 s1 s2; soup s42 s7 s1 s2 gte sym hard sc30; } > $W/logs/soups.jsonl
echo "all done at $(( $(date +%s) - T0 ))s" >> $W/logs/env.txt
for n in $V; do grep -h '"done"\|process_wall' $W/logs/$n.log; tail -1 $W/logs/$n.err; done > $OUT/summary.txt
cat $W/logs/soups.jsonl >> $OUT/summary.txt; tail -3 $W/logs/soup.err >> $OUT/summary.txt 2>/dev/null
cat $W/logs/env.txt >> $OUT/summary.txt
(cd $W && tar czf $OUT/call5.tgz logs m-*/train_report.json m-*/model_card.json 2>/dev/null)
