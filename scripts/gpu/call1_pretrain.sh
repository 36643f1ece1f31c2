#!/usr/bin/env bash
# Device call 1: bootstrap the tiny test encoder and the base encoder from scratch.
# usage (device): bash scripts/gpu/call1_pretrain.sh   (needs carry: .carry/data)
set -uo pipefail
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; W=/tmp/w; mkdir -p $W
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python3 -c "import torch,transformers,sentence_transformers as s,onnx,onnxruntime as o; print(torch.__version__,transformers.__version__,s.__version__,onnx.__version__,o.__version__)"; } 2>&1 | tee $OUT/env.txt
python3 scripts/gpu/pretrain.py --preset tiny --out $W/tiny --version tiny-1 --mlm-seconds ${TINY_MLM:-40} --mnrl-seconds ${TINY_MNRL:-40} --eval 2>&1 | grep -v '"progress"' | grep -v -i warn | tee $OUT/tiny_log.txt
(cd $W && tar czf $OUT/tiny.tgz tiny)
python3 scripts/gpu/pretrain.py --preset base --out $W/base --version base-1 --mlm-seconds ${BASE_MLM:-170} --mnrl-seconds ${BASE_MNRL:-130} --eval --fp16-weights 2>&1 | grep -v '"progress"' | grep -v -i warn | tee $OUT/base_log.txt
(cd $W && rm -f base/onnx/model.onnx.keep && tar czf $OUT/base.tgz base)
ls -la $W/*/onnx | tee -a $OUT/env.txt
