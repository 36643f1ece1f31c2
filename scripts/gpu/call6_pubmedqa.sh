#!/usr/bin/env bash
# Device call 6: call 5's best loss shape (in-batch hardness weighting, strength 5) on recipe M for 10 epochs,
# 8 trainers concurrently: four seeds (for a soup), strength 9 with two seeds, + GTE directions, + lr 6e-4.
# Results: $OUT/summary.txt, $OUT/call6.tgz.
set -uo pipefail
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 RAYON_NUM_THREADS=2
OUT=${OUT:-/tmp/out}; W=/tmp/w6; rm -rf $W; mkdir -p $OUT $W/logs
T0=$(date +%s)
bash scripts/gpu/setup.sh > $W/logs/env.txt 2>&1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >> $W/logs/env.txt
C='"max_seq_length":256,"gpu":"required","dataloader_workers":1,"batch_size":256,"lr":8e-4,"epochs":10,"corpus_pairs":{"group":3,"ict":2}'
mk() { local n=$1 j=$2; python3 scripts/gpu/make_bundle.py --dataset pubmedqa --base models/base --group-field pmid --out $W/b-$n \
  --job "{$C,$j,\"version\":\"pm6-$n\"}" >> $W/logs/bundles.txt; }
H5='"hardness":{"mode":"in_batch_negatives","strength":5}'; H9='"hardness":{"mode":"in_batch_negatives","strength":9}'
mk h5s42 "\"seed\":42,$H5"; mk h5s7 "\"seed\":7,$H5"; mk h5s1 "\"seed\":1,$H5"; mk h5s2 "\"seed\":2,$H5"
mk h9s42 "\"seed\":42,$H9"; mk h9s7 "\"seed\":7,$H9"
mk h5gte "\"seed\":42,$H5,\"directions\":[\"query_to_doc\",\"query_to_query\",\"doc_to_query\",\"doc_to_doc\"]"
mk h5lr6 "\"seed\":42,$H5,\"lr\":6e-4"
V="h5s42 h5s7 h5s1 h5s2 h9s42 h9s7 h5gte h5lr6"
for n in $V; do
  (S=$(date +%s); timeout ${LIMIT:-420} python3 -m trainer train $W/b-$n $W/m-$n 2>$W/logs/$n.err | grep -v '"progress"' > $W/logs/$n.log
   echo "{\"event\":\"process_wall_seconds\",\"name\":\"$n\",\"s\":$(( $(date +%s) - S ))}" >> $W/logs/$n.log) &
done
wait
echo "trained at $(( $(date +%s) - T0 ))s" >> $W/logs/env.txt
soup() { local ms=(); for n in "$@"; do [ -d $W/m-$n ] && ms+=($W/m-$n/pytorch); done
  timeout 60 python3 scripts/gpu/soup.py --no-singles --bundle $W/b-h5s42 --models "${ms[@]}" 2>>$W/logs/soup.err | grep '"event"'; }
{ soup h5s42 h5s7; soup h5s42 h5s7 h5s1 h5s2; soup h9s42 h9s7; soup h5s42 h5s7 h5s1 h5s2 h9s42 h9s7; soup $V; } > $W/logs/soups.jsonl
echo "all done at $(( $(date +%s) - T0 ))s" >> $W/logs/env.txt
for n in $V; do grep -h '"done"\|process_wall' $W/logs/$n.log; tail -1 $W/logs/$n.err; done > $OUT/summary.txt
cat $W/logs/soups.jsonl >> $OUT/summary.txt; tail -3 $W/logs/soup.err >> $OUT/summary.txt 2>/dev/null
cat $W/logs/env.txt >> $OUT/summary.txt
(cd $W && tar czf $OUT/call6.tgz logs m-*/train_report.json m-*/model_card.json 2>/dev/null)
