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
PREFIX=pm5; source scripts/gpu/variants.sh
mk s42 '"seed":42'; mk s7 '"seed":7'; mk s1 '"seed":1'; mk s2 '"seed":2'
mk gte '"seed":42,"directions":["query_to_doc","query_to_query","doc_to_query","doc_to_doc"]'
mk sym '"seed":42,"directions":["query_to_doc","doc_to_query"],"partition_mode":"per_direction"'
mk hard '"seed":42,"hardness":{"mode":"in_batch_negatives","strength":5}'
mk sc30 '"seed":42,"scale":30'
V="s42 s7 s1 s2 gte sym hard sc30"
train_all $V
{ soup s42 s42 s7; soup s42 s42 s7 s1 s2; soup s42 s42 s7 s1 s2 gte sym hard sc30; } > $W/logs/soups.jsonl
summarize $V
(cd $W && tar czf $OUT/call5.tgz logs m-*/train_report.json m-*/model_card.json 2>/dev/null)
