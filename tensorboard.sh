#!/usr/bin/env sh
# TensorBoard on the training logs (`python -m training.train` writes runs/<run-name>/).
# Usage: ./tensorboard.sh [port]   (then open http://localhost:${1:-6006})
set -eu
cd "$(dirname "$0")"
PORT="${1:-6006}"
mkdir -p runs
if [ -x .venv/bin/tensorboard ]; then TB=.venv/bin/tensorboard; else TB=tensorboard; fi
exec "$TB" --logdir runs --port "$PORT" --bind_all
