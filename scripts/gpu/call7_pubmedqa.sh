#!/usr/bin/env bash
# Device call 7: the product path for PubMedQA. One `python -m trainer train` with the recipe calls 5-6 chose:
# recipe M (group 3 + ict 2, bs 256, lr 8e-4, 10 epochs) + in-batch hardness weighting (strength 5) + `soup: 4`
# (seeds SEED..SEED+3, SEED default 42, trained side by side in their own processes, uniform weight average). Then the trainer's pytest
# suite (PYTEST=0 skips it). EPOCHS / HARD / SOUP / SEED (defaults 10 / 5 / 4 / 42) vary the recipe for later calls;
# W (work dir) and JOBOUT (results dir, default $OUT) let call8/call9 run several side by side; BASE (default
# models/base) is the model fine-tuned. Results: $OUT/summary.txt, $OUT/train.jsonl (the trainer's stdout), $OUT/call7.tgz, $OUT/pytest.txt.
set -uo pipefail
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 RAYON_NUM_THREADS=2
OUT=${JOBOUT:-${OUT:-/tmp/out}}; W=${W:-/tmp/w7}; rm -rf $W; mkdir -p $OUT $W/logs
T0=$(date +%s)
bash scripts/gpu/setup.sh > $W/logs/env.txt 2>&1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >> $W/logs/env.txt
python3 scripts/gpu/make_bundle.py --dataset pubmedqa --base ${BASE:-models/base} --group-field pmid --out $W/b --job \
  '{"max_seq_length":256,"gpu":"required","dataloader_workers":3,"batch_size":256,"lr":8e-4,"epochs":'${EPOCHS:-10}',"seed":'${SEED:-42}',
    "corpus_pairs":{"group":3,"ict":2},"hardness":{"mode":"in_batch_negatives","strength":'${HARD:-5}'},"soup":'${SOUP:-4}',
    "version":"pm7-soup'${SOUP:-4}'-e'${EPOCHS:-10}'-h'${HARD:-5}'-s'${SEED:-42}'"}' >> $W/logs/bundles.txt
S=$(date +%s)
timeout ${LIMIT:-420} python3 -m trainer train $W/b $W/m > $OUT/train.jsonl 2>$W/logs/train.err
echo "{\"event\":\"process_wall_seconds\",\"rc\":$?,\"s\":$(( $(date +%s) - S ))}" >> $OUT/train.jsonl
grep -v '"progress"' $OUT/train.jsonl > $OUT/summary.txt; tail -2 $W/logs/train.err >> $OUT/summary.txt
[ "${PYTEST:-1}" = 1 ] && (S=$(date +%s); timeout ${PYTEST_LIMIT:-150} python3 -m pytest -q trainer/tests > $OUT/pytest.txt 2>&1; echo "rc=$? wall=$(( $(date +%s) - S ))s" >> $OUT/pytest.txt)
echo "all done at $(( $(date +%s) - T0 ))s" >> $W/logs/env.txt
cat $W/logs/env.txt >> $OUT/summary.txt; tail -3 $OUT/pytest.txt >> $OUT/summary.txt
(cd $W && tar czf $OUT/call7.tgz logs m/train_report.json m/model_card.json b/job.json 2>/dev/null)
