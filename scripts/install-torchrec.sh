#!/usr/bin/env bash
# Install TorchRec for the optional sharded-embedding path, CPU-only, beside torch==2.13.0.
# torchrec declares the CUDA fbgemm-gpu (a 2.7 GB wheel that breaks the import here), so the
# CPU build of fbgemm and torchrec's other needs go first, then torchrec itself --no-deps.
# fbgemm-gpu-cpu 1.9.0 is built for torch 2.14 and fails to load: keep 1.8.0 with torch 2.13.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -c constraints.txt fbgemm-gpu-cpu==1.8.0 tensordict torchmetrics==1.0.3 \
    pyre-extensions tqdm
python3 -m pip install -q -c constraints.txt --no-deps torchrec==1.8.0
python3 -c "import torchrec; print('torchrec', torchrec.__version__)"
