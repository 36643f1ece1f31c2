#!/usr/bin/env bash
# Device call 2: trainer pytest on GPU, tiny-ft-go / tiny-bad via the real trainer, ST evaluator fixture.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; W=/tmp/w2; rm -rf $W; mkdir -p $W
bash scripts/gpu/setup.sh 2>&1 | tee $OUT/setup.txt
nvidia-smi --query-gpu=name --format=csv,noheader | tee -a $OUT/setup.txt
JOB='{"batch_size":256,"epochs":1,"lr":1e-3,"seed":42,"max_seq_length":64,"version":"VERSION","gpu":"required"}'
python3 scripts/gpu/make_bundle.py --dataset go --base test/fixtures/models/tiny --out $W/b-go --job "${JOB/VERSION/tiny-ft-go-1}"
python3 -m trainer train $W/b-go $W/tiny-ft-go 2>$OUT/ft_go.err | grep -v '"progress"' | tee $OUT/ft_go.log
python3 scripts/gpu/make_bundle.py --dataset go --base test/fixtures/models/tiny --out $W/b-bad --shuffle-positives --job "${JOB/VERSION/tiny-bad-1}"
python3 -m trainer train $W/b-bad $W/tiny-bad 2>$OUT/bad.err | grep -v '"progress"' | tee $OUT/bad.log
tail -3 $OUT/ft_go.err $OUT/bad.err
python3 scripts/gpu/st_fixture.py --model $W/tiny-ft-go --out $W/st_ir_fixture.json 2>&1 | grep fixture
(cd $W && tar czf $OUT/tiny_models.tgz tiny-ft-go tiny-bad st_ir_fixture.json)
timeout 300 python3 -m pytest -v trainer/tests 2>&1 | tee $OUT/pytest.txt | tail -25
