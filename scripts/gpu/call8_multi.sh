#!/usr/bin/env bash
# Device call 8: several call-7 trainings side by side on a machine of several GPUs (nvidia-h100-x4), one
# `python -m trainer train` per GPU, so that one recipe is measured over several seeds in one call instead
# of reporting the best of several calls. Arguments: EPOCHS:HARD:SOUP:SEED, one per job; job i runs on GPU
# i mod (number of GPUs). The trainer's pytest runs beside them (niced) unless PYTEST=0.
# Results: $OUT/summary.txt (every job's non-progress events), $OUT/jobN.tgz, $OUT/pytest.txt.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
T0=$(date +%s)
bash scripts/gpu/setup.sh > $OUT/summary.txt 2>&1
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader >> $OUT/summary.txt
NG=$(nvidia-smi -L | wc -l)
i=0
for spec in "$@"; do
  IFS=: read -r E H S SD <<< "$spec"
  ( CUDA_VISIBLE_DEVICES=$(( i % NG )) EPOCHS=$E HARD=$H SOUP=$S SEED=$SD W=/tmp/w8-$i JOBOUT=/tmp/o8-$i PYTEST=0 \
      bash scripts/gpu/call7_pubmedqa.sh
    tar czf $OUT/job$i.tgz -C /tmp/o8-$i . ) &
  i=$(( i + 1 ))
done
if [ "${PYTEST:-1}" = 1 ]; then
  (S=$(date +%s); CUDA_VISIBLE_DEVICES=0 timeout ${PYTEST_LIMIT:-300} nice -n 10 python3 -m pytest -q trainer/tests > $OUT/pytest.txt 2>&1
   echo "rc=$? wall=$(( $(date +%s) - S ))s" >> $OUT/pytest.txt) &
fi
wait
j=0
for spec in "$@"; do
  echo "== job$j $spec" >> $OUT/summary.txt
  grep -E '"when": "(before|member|after|int8)"|"event": "(done|error)"|process_wall|rror' /tmp/o8-$j/summary.txt | cut -c1-400 >> $OUT/summary.txt
  j=$(( j + 1 ))
done
[ -f $OUT/pytest.txt ] && tail -3 $OUT/pytest.txt >> $OUT/summary.txt
echo "all done at $(( $(date +%s) - T0 ))s" >> $OUT/summary.txt
