#!/usr/bin/env bash
# The GPU checks of issue 11 as one prepared script (at most 10 minutes on one GPU): video throughput on CUDA
# (bf16 autocast, channels-last) beside fp32, and the training rate at 224 px projected to RAF-DB's 60 epochs.
#
# On the device machine (its python3 holds torch and onnxruntime, not the rest): carry the wheels of what is missing
# in .whl/ (dlib-bin, face-recognition-models, imageio-ffmpeg, ffmpeg-python, fastcore, tqdm; see the device tool's
# README for `pip download`), then
#     bash bench/gpu.sh            # prints every figure; the GPU's name comes first
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
# training: full-size epoch projected from 40 timed steps at the paper's batch 64
timeout 240 python3 bench/train_throughput.py --sizes 224 --batch 64 --steps 40 --device cuda \
  --epoch-images 12271 --epochs 60
# video: the demo videos, the long webcam-like recording and the 4x4 1080p gallery, fp32 beside the fast path
timeout 330 python3 bench/video_throughput.py --device cuda
