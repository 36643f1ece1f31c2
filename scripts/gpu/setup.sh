#!/usr/bin/env bash
# Device setup: `datasets` (needed by SentenceTransformerTrainer) is not in the device image; install the
# wheels carried in .whl/ (datasets, dill are pure Python; multiprocess ships per-Python wheels, and only a
# py311 one is in the local mirror, so it is unpacked onto the path instead -- it is pure Python too).
python3 -c "import datasets" 2>/dev/null && exit 0
python3 -m pip install -q --no-index --no-deps .whl/datasets-*.whl .whl/dill-*.whl 2>&1 | tail -2
SP=$(python3 -c "import site; print(site.getsitepackages()[0])")
python3 -c "import multiprocess" 2>/dev/null || python3 -m zipfile -e .whl/multiprocess-*.whl "$SP"
python3 -c "import datasets, multiprocess; print('datasets', datasets.__version__)"
