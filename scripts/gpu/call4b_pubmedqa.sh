#!/usr/bin/env bash
# Device call 4b: more PubMedQA corpus_pairs recipes (group-heavy, group_span, larger batches, more epochs),
# GO with the server-style wiring (corpus "group" = passage id, corpus_pairs {"group":3,"ict":0}: no extra pairs,
# group-aware sampler), and the full trainer pytest suite. Results: $OUT/call4b.tgz, $OUT/summary.txt, $OUT/pytest.txt.
set -uo pipefail
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 RAYON_NUM_THREADS=2
OUT=${OUT:-/tmp/out}; W=/tmp/w4b; rm -rf $W; mkdir -p $OUT $W/logs
T0=$(date +%s)
bash scripts/gpu/setup.sh > $W/logs/env.txt 2>&1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >> $W/logs/env.txt
C='"seed":42,"max_seq_length":256,"gpu":"required","epochs":16,"dataloader_workers":2'
mk() { local n=$1; shift; python3 scripts/gpu/make_bundle.py --dataset pubmedqa --base models/base --group-field pmid --out $W/b-$n "$@" >> $W/logs/bundles.txt; }
mk H --job "{$C,\"batch_size\":256,\"lr\":5e-4,\"corpus_pairs\":{\"group\":3,\"ict\":2},\"version\":\"pm-H\"}"
mk I --job "{$C,\"batch_size\":256,\"lr\":3e-4,\"corpus_pairs\":{\"group\":3,\"ict\":0,\"group_span\":2},\"version\":\"pm-I\"}"
mk J --job "{$C,\"batch_size\":256,\"lr\":3e-4,\"corpus_pairs\":{\"group\":3,\"ict\":2},\"version\":\"pm-J\"}"
mk K --job "{$C,\"batch_size\":256,\"lr\":5e-4,\"corpus_pairs\":{\"group\":6,\"ict\":0,\"group_span\":2},\"version\":\"pm-K\"}"
mk L --job "{$C,\"batch_size\":128,\"lr\":2e-4,\"corpus_pairs\":{\"group\":3,\"ict\":2},\"version\":\"pm-L\"}"
python3 scripts/gpu/make_bundle.py --dataset go --base models/base --group-field id --out $W/b-GOg --job '{"batch_size":256,"epochs":1,"lr":3e-4,"seed":42,"max_seq_length":128,"gpu":"required","corpus_pairs":{"group":3,"ict":0},"version":"go-groups"}' >> $W/logs/bundles.txt
one() {
  local n=$1 S=$(date +%s)
  timeout ${LIMIT:-470} python3 -m trainer train $W/b-$n $W/m-$n 2>$W/logs/$n.err | grep -v '"progress"' > $W/logs/$n.log
  echo "{\"event\":\"process_wall_seconds\",\"name\":\"$n\",\"s\":$(( $(date +%s) - S ))}" >> $W/logs/$n.log
  if [ "${n:0:2}" != GO ] && [ -d $W/m-$n ]; then
    python3 scripts/gpu/hybrid_eval.py --model $W/m-$n/pytorch --bundle $W/b-$n --name $n > $W/logs/$n.hybrid.json 2>>$W/logs/$n.err
  fi
}
V=${VARIANTS:-H I J K L GOg}
for n in $V; do one $n & done
(S=$(date +%s); timeout ${LIMIT:-470} python3 -m pytest -q trainer/tests > $OUT/pytest.txt 2>&1; echo "rc=$? wall=$(( $(date +%s) - S ))s" >> $OUT/pytest.txt) &
wait
echo "all done at $(( $(date +%s) - T0 ))s" >> $W/logs/env.txt
for n in $V; do
  grep -h '"done"\|"corpus_pairs"\|process_wall' $W/logs/$n.log; cat $W/logs/$n.hybrid.json 2>/dev/null; tail -1 $W/logs/$n.err
done > $OUT/summary.txt
(cd $W && tar czf $OUT/call4b.tgz logs m-*/train_report.json m-*/model_card.json)
cat $W/logs/env.txt; tail -3 $OUT/pytest.txt
