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
PREFIX=pm6; source scripts/gpu/variants.sh
H5='"hardness":{"mode":"in_batch_negatives","strength":5}'; H9='"hardness":{"mode":"in_batch_negatives","strength":9}'
mk h5s42 "\"seed\":42,$H5"; mk h5s7 "\"seed\":7,$H5"; mk h5s1 "\"seed\":1,$H5"; mk h5s2 "\"seed\":2,$H5"
mk h9s42 "\"seed\":42,$H9"; mk h9s7 "\"seed\":7,$H9"
mk h5gte "\"seed\":42,$H5,\"directions\":[\"query_to_doc\",\"query_to_query\",\"doc_to_query\",\"doc_to_doc\"]"
mk h5lr6 "\"seed\":42,$H5,\"lr\":6e-4"
V="h5s42 h5s7 h5s1 h5s2 h9s42 h9s7 h5gte h5lr6"
train_all $V
{ soup h5s42 h5s42 h5s7; soup h5s42 h5s42 h5s7 h5s1 h5s2; soup h5s42 h9s42 h9s7; soup h5s42 h5s42 h5s7 h5s1 h5s2 h9s42 h9s7; soup h5s42 $V; } > $W/logs/soups.jsonl
summarize $V
(cd $W && tar czf $OUT/call6.tgz logs m-*/train_report.json m-*/model_card.json 2>/dev/null)
