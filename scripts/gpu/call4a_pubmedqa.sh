#!/usr/bin/env bash
# Device call 4a: PubMedQA fine-tunes of models/base with job.json "corpus_pairs" variants (run concurrently: the
# 6M model leaves the H100 idle, the CPU-side collator is the limit), the GO check with corpus_pairs on, and
# dense/BM25/hybrid-RRF metrics of every PubMedQA model. Everything lands in $OUT/call4a.tgz + $OUT/summary.txt.
set -uo pipefail
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 RAYON_NUM_THREADS=2
OUT=${OUT:-/tmp/out}; W=/tmp/w4; rm -rf $W; mkdir -p $OUT $W/logs
T0=$(date +%s)
bash scripts/gpu/setup.sh > $W/logs/env.txt 2>&1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >> $W/logs/env.txt
C='"seed":42,"max_seq_length":256,"gpu":"required","batch_size":128,"epochs":10,"lr":2e-4'
mk() { local n=$1; shift; python3 scripts/gpu/make_bundle.py --dataset pubmedqa --base models/base --group-field pmid --out $W/b-$n "$@" >> $W/logs/bundles.txt; }
mk B --job "{$C,\"corpus_pairs\":{\"group\":1,\"ict\":1},\"version\":\"pm-B\"}"
mk C --job "{$C,\"corpus_pairs\":{\"group\":1,\"ict\":1},\"hard_negatives\":{\"num_negatives\":1,\"range_min\":10,\"range_max\":50},\"version\":\"pm-C\"}"
mk D --job "{$C,\"corpus_pairs\":{\"group\":1,\"ict\":0},\"version\":\"pm-D\"}"
mk E --job "{$C,\"corpus_pairs\":{\"group\":0,\"ict\":1},\"dataloader_workers\":2,\"version\":\"pm-E\"}"
mk F --ungroup-eval --job "{$C,\"corpus_pairs\":{\"group\":1,\"ict\":1},\"version\":\"pm-F\"}"
mk G --job "{$C,\"corpus_pairs\":{\"group\":3,\"ict\":2},\"version\":\"pm-G\"}"
python3 scripts/gpu/make_bundle.py --dataset go --base models/base --out $W/b-GO --job '{"batch_size":256,"epochs":1,"lr":3e-4,"seed":42,"max_seq_length":128,"gpu":"required","corpus_pairs":true,"version":"go-cp"}' >> $W/logs/bundles.txt
one() {
  local n=$1 S=$(date +%s)
  timeout ${LIMIT:-470} python3 -m trainer train $W/b-$n $W/m-$n 2>$W/logs/$n.err | grep -v '"progress"' > $W/logs/$n.log
  echo "{\"event\":\"process_wall_seconds\",\"name\":\"$n\",\"s\":$(( $(date +%s) - S ))}" >> $W/logs/$n.log
  if [ "$n" != GO ] && [ -d $W/m-$n ]; then
    python3 scripts/gpu/hybrid_eval.py --model $W/m-$n/pytorch --bundle $W/b-$n --name $n > $W/logs/$n.hybrid.json 2>>$W/logs/$n.err
  fi
}
for n in ${VARIANTS:-B C D E F G GO}; do one $n & done
wait
echo "all done at $(( $(date +%s) - T0 ))s" >> $W/logs/env.txt
for n in ${VARIANTS:-B C D E F G GO}; do
  grep -h '"done"\|"corpus_pairs"\|"hard_negatives"\|process_wall' $W/logs/$n.log; cat $W/logs/$n.hybrid.json 2>/dev/null; tail -1 $W/logs/$n.err
done > $OUT/summary.txt
(cd $W && tar czf $OUT/call4a.tgz logs m-*/train_report.json m-*/model_card.json)
cat $W/logs/env.txt
