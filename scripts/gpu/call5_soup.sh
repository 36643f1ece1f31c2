#!/usr/bin/env bash
# Device call 5: two seeds of recipe M (group 3 + ict 2, bs 256, lr 8e-4) for 10 epochs, concurrently, then
# their weight average ("soup", scripts/gpu/soup.py) scored on PubMedQA dev. Results: $OUT/summary.txt.
set -uo pipefail
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4 RAYON_NUM_THREADS=4
OUT=${OUT:-/tmp/out}; W=/tmp/w5; rm -rf $W; mkdir -p $OUT $W/logs
T0=$(date +%s)
bash scripts/gpu/setup.sh > $W/logs/env.txt 2>&1
C='"max_seq_length":256,"gpu":"required","dataloader_workers":4,"batch_size":256,"lr":8e-4,"epochs":10,"corpus_pairs":{"group":3,"ict":2}'
for s in 42 7; do
  python3 scripts/gpu/make_bundle.py --dataset pubmedqa --base models/base --group-field pmid --out $W/b-$s \
    --job "{$C,\"seed\":$s,\"version\":\"pm-soup-$s\"}" >> $W/logs/bundles.txt
done
for s in 42 7; do
  (timeout ${LIMIT:-150} python3 -m trainer train $W/b-$s $W/m-$s 2>$W/logs/$s.err | grep -v '"progress"' > $W/logs/$s.log) &
done
wait
echo "trained at $(( $(date +%s) - T0 ))s" >> $W/logs/env.txt
grep -h '"done"' $W/logs/*.log > $OUT/summary.txt
[ -d $W/m-42 ] && [ -d $W/m-7 ] && timeout 40 python3 scripts/gpu/soup.py --bundle $W/b-42 --models $W/m-42/pytorch $W/m-7/pytorch 2>>$W/logs/soup.err | grep '"event"' >> $OUT/summary.txt
echo "all done at $(( $(date +%s) - T0 ))s" >> $W/logs/env.txt
tail -2 $W/logs/*.err >> $OUT/summary.txt 2>/dev/null
cat $W/logs/env.txt >> $OUT/summary.txt
(cd $W && tar czf $OUT/call5.tgz logs m-*/train_report.json m-*/model_card.json 2>/dev/null)
