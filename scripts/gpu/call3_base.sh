#!/usr/bin/env bash
# Device call 3: pretrain the base encoder from scratch, then fine-tune it with the real trainer on
# GO train (all ~84k pairs, 1 epoch: the timing run) and PubMedQA train; evaluate on the dev splits.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; W=/tmp/w3; rm -rf $W; mkdir -p $W
T0=$(date +%s)
bash scripts/gpu/setup.sh > $OUT/env.txt 2>&1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >> $OUT/env.txt
python3 scripts/gpu/pretrain.py --preset base --out $W/base --version base-1 --mlm-seconds ${BASE_MLM:-150} --mnrl-seconds ${BASE_MNRL:-120} --eval --fp16-weights 2>&1 | grep -v '"progress"' | grep -iv warn | tee $OUT/base_log.txt
(cd $W && tar czf $OUT/base_pt.tgz --exclude=base/onnx base && tar czf $OUT/base_onnx.tgz base/onnx/model_quantized.onnx)
echo "pretrain done at $(( $(date +%s) - T0 ))s" | tee -a $OUT/env.txt
python3 scripts/gpu/make_bundle.py --dataset go --base $W/base --out $W/b-go --job '{"batch_size":256,"epochs":1,"lr":3e-4,"seed":42,"max_seq_length":128,"version":"base-ft-go-1","gpu":"required"}'
S=$(date +%s%N)
python3 -m trainer train $W/b-go $W/ft-go 2>$W/ft_go.err | grep -v '"progress"' | tee $OUT/ft_go.log
echo "{\"event\":\"process_wall_seconds\",\"ms\":$(( ($(date +%s%N) - S) / 1000000 ))}" | tee -a $OUT/ft_go.log; tail -2 $W/ft_go.err
echo "go ft done at $(( $(date +%s) - T0 ))s" | tee -a $OUT/env.txt
python3 scripts/gpu/make_bundle.py --dataset pubmedqa --base $W/base --out $W/b-pm --job '{"batch_size":64,"epochs":3,"lr":1e-4,"seed":42,"max_seq_length":256,"version":"base-ft-pubmedqa-1","gpu":"required"}'
python3 -m trainer train $W/b-pm $W/ft-pm 2>$W/ft_pm.err | grep -v '"progress"' | tee $OUT/ft_pm.log; tail -2 $W/ft_pm.err
(cd $W && tar czf $OUT/reports.tgz ft-*/train_report.json ft-*/model_card.json)
echo "all done at $(( $(date +%s) - T0 ))s" | tee -a $OUT/env.txt
