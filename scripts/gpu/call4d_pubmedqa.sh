#!/usr/bin/env bash
# Device call 4d: from M (group 3 + ict 2, bs 256, lr 8e-4, 16 epochs): higher lr, g4 i2, and M with another seed
# (seed noise). Results: $OUT/call4d.tgz (+ int8 models), $OUT/summary.txt.
set -uo pipefail
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 RAYON_NUM_THREADS=2
OUT=${OUT:-/tmp/out}; W=/tmp/w4d; rm -rf $W; mkdir -p $OUT $W/logs
T0=$(date +%s)
bash scripts/gpu/setup.sh > $W/logs/env.txt 2>&1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >> $W/logs/env.txt
C='"seed":42,"max_seq_length":256,"gpu":"required","dataloader_workers":3'
mk() { local n=$1; shift; python3 scripts/gpu/make_bundle.py --dataset pubmedqa --base models/base --group-field pmid --out $W/b-$n "$@" >> $W/logs/bundles.txt; }
mk Q --job "{$C,\"batch_size\":256,\"lr\":1.2e-3,\"epochs\":16,\"corpus_pairs\":{\"group\":3,\"ict\":2},\"version\":\"pm-Q\"}"
mk R --job "{$C,\"batch_size\":256,\"lr\":1.6e-3,\"epochs\":16,\"corpus_pairs\":{\"group\":3,\"ict\":2},\"version\":\"pm-R\"}"
mk S --job "{$C,\"batch_size\":256,\"lr\":1e-3,\"epochs\":16,\"corpus_pairs\":{\"group\":4,\"ict\":2},\"version\":\"pm-S\"}"
mk T --job "{$C,\"seed\":7,\"batch_size\":256,\"lr\":8e-4,\"epochs\":16,\"corpus_pairs\":{\"group\":3,\"ict\":2},\"version\":\"pm-T\"}"
one() {
  local n=$1 S=$(date +%s)
  timeout ${LIMIT:-330} python3 -m trainer train $W/b-$n $W/m-$n 2>$W/logs/$n.err | grep -v '"progress"' > $W/logs/$n.log
  echo "{\"event\":\"process_wall_seconds\",\"name\":\"$n\",\"s\":$(( $(date +%s) - S ))}" >> $W/logs/$n.log
  [ -d $W/m-$n ] && python3 scripts/gpu/hybrid_eval.py --model $W/m-$n/pytorch --bundle $W/b-$n --name $n > $W/logs/$n.hybrid.json 2>>$W/logs/$n.err
}
V=${VARIANTS:-Q R S T}
for n in $V; do one $n & done
wait
echo "all done at $(( $(date +%s) - T0 ))s" >> $W/logs/env.txt
for n in $V; do
  grep -h '"done"\|"corpus_pairs"\|process_wall' $W/logs/$n.log; cat $W/logs/$n.hybrid.json 2>/dev/null; tail -1 $W/logs/$n.err
done > $OUT/summary.txt
(cd $W && tar czf $OUT/call4d.tgz logs m-*/train_report.json m-*/model_card.json && tar czf $OUT/models4d.tgz --exclude=pytorch --exclude=model.onnx m-*)
cat $W/logs/env.txt
