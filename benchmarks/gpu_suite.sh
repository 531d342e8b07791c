#!/usr/bin/env bash
# SkyReels-V2's and the keyframe model's GPU measurements in one go, on a bare CUDA machine without network,
# in about 9 minutes (the SkyReels-V2 stages, 1 to 4, in 8).
#
# The machine needs Python 3.12 with a CUDA build of torch (and transformers, tokenizers, safetensors,
# huggingface_hub, accelerate, pyyaml, jinja2, typer, rich, networkx, numpy, pillow), as the usual
# GPU images have; what they lack comes as wheels carried along with the project:
#
#   bash benchmarks/gpu_suite.sh --download .whl     # on a machine with network: fetch the wheels into .whl/
#   bash benchmarks/gpu_suite.sh --wheels .whl       # on the GPU machine: install them, run the suite
#   bash benchmarks/gpu_suite.sh --cpu-check --wheels W --python P --out DIR
#       # anywhere: every stage at toy size on the CPU from the same install, to check the script and the
#       # carried wheels against the GPU image's packages before any GPU minute is spent on them
#
# Stages, each under its own time limit (120 + 140 + 150 + 60 + 55 s, about 9 minutes with the install);
# every stage writes its JSON, named after the GPU, under --out (default benchmarks/results/) as rows finish,
# so a stage stopped at its limit keeps what it measured. Within a stage the configs run most telling first:
#   1. DF-1.3B per denoise step at 540P x 97 frames: sdpa eager bf16 (what diffusers runs by default),
#      the auto kernel eager and compiled in bf16, compiled in FP8, then every other kernel installed,
#      eager and compiled, bf16 and FP8, as time allows; FP8's error against bf16
#   2. one whole DF-1.3B shot (157 frames, windows of 97 and 77, --shot-steps steps, default 6) through the
#      generator, from a real-size random-weight folder, held to 8 GiB of GPU memory (the 8 GB GPU it must
#      fit; once more without the limit if it runs out): load, encode, windows, decode
#   3. DF-14B per denoise step: sdpa eager bf16, the auto kernel compiled in bf16 and FP8, then eager
#   4. the GPU tests of tests/test_skyreels.py (tiny random-weight model: kernels, compilation, FP8, memory)
#   5. with more than one GPU: DF-1.3B s/step split over 2, 4, 8 GPUs (--gpus-per-shot, sequence
#      parallelism: benchmarks/sequence_parallel.py) as a render splits it (12 heads: Ulysses on 2 and 4,
#      Ulysses 4 x ring 2 on 8), and over 2 GPUs as a ring (ring attention, on a kernel returning the
#      log-sum-exp), 60 s each beyond the 8 minutes; with one GPU it says so
#   6. keyframes: random weights of FLUX.2 [klein] 4B, seconds per 540P keyframe with 0-4 reference images,
#      peak memory, and what close() leaves allocated (benchmarks/keyframes.py --real-size)
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=.whl
OUT=benchmarks/results
PYTHON=${PYTHON:-python3}
SHOT_STEPS=6
DOWNLOAD=""
CPU_CHECK=""
usage() { sed -n '2,/^[^#]/{/^#/p}' "$0"; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --wheels) WHEELS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --python) PYTHON=$2; shift 2 ;;
        --shot-steps) SHOT_STEPS=$2; shift 2 ;;
        --download) DOWNLOAD=$2; shift 2 ;;
        --cpu-check) CPU_CHECK=1; shift ;;
        -h|--help) usage ;;
        *) echo "gpu_suite.sh: unknown argument '$1'" >&2; usage 2 ;;
    esac
done

# The wheels the GPU image lacks: diffusers (pinned: storyreel's quirks were measured on it), ftfy (the
# pipelines clean prompts with it), torchao (FP8), pydantic (storyreel's models), and a setuptools that
# reads pyproject.toml's SPDX licence (the image's may be older). For CPython 3.12 on x86-64.
PACKAGES=(
    diffusers==0.42.1 importlib-metadata ftfy==6.3.1 wcwidth torchao==0.18.0
    pydantic==2.14.4 pydantic-core==2.50.5 annotated-types typing-inspection setuptools==80.9.0
)

if [ -n "$DOWNLOAD" ]; then
    mkdir -p "$DOWNLOAD"
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$DOWNLOAD" "${PACKAGES[@]}"
    ls -l "$DOWNLOAD"
    exit 0
fi

started=$(date +%s)
elapsed() { echo $(( $(date +%s) - started )); }
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# --- install: the carried wheels and storyreel itself, into a folder of their own ---------------------------
SITE=$(mktemp -d /tmp/storyreel-suite-XXXX)
ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "no wheels in $WHEELS: run --download there first" >&2; exit 1; }
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$WHEELS"/*.whl
# storyreel is built with the carried setuptools: $SITE comes first on the path from here on
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$SITE" .
# -P: the working tree's storyreel/ folder is not the installed package (generators/ sits beside it)
CPU_CHECK="$CPU_CHECK" "$PYTHON" -P - <<'EOF'
import os, torch, diffusers, storyreel.generators.skyreels as sky
if os.environ["CPU_CHECK"]:
    print(f"CPU check: torch {torch.__version__}, diffusers {diffusers.__version__}")
elif not torch.cuda.is_available():
    raise SystemExit("gpu_suite.sh: torch sees no CUDA GPU (--cpu-check runs every stage at toy size on the CPU)")
else:
    major, minor = torch.cuda.get_device_capability()
    print(f"{torch.cuda.get_device_name()} (compute capability {major}.{minor}), torch {torch.__version__}, "
          f"diffusers {diffusers.__version__}")
EOF
mkdir -p "$OUT"
if [ -n "$CPU_CHECK" ]; then
    GPU=cpu-check
else
    GPU=$("$PYTHON" -c "import re, torch; print(re.sub(r'[^A-Za-z0-9]+', '-', torch.cuda.get_device_name()).strip('-'))")
fi
LOG="$OUT/gpu_suite-$GPU.log"
echo "installed in $(elapsed)s; log: $LOG"

# stage NAME LIMIT_SECONDS COMMAND...: run with a hard time limit, log it, go on whatever it returns
stage() {
    local name=$1 limit=$2
    shift 2
    echo "=== $name (at most ${limit}s, from $(elapsed)s)" | tee -a "$LOG"
    set +e
    timeout --signal=TERM --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
    local status=${PIPESTATUS[0]}
    set -e
    [ "$status" -eq 0 ] || echo "=== $name ended with status $status (124: its time limit)" | tee -a "$LOG"
}
BENCH=("$PYTHON" benchmarks/skyreels_dit.py --out "$OUT" --scratch /tmp)
# --cpu-check: the same stages at toy size on the CPU (each benchmark's own smoke flags)
TOY=() SPLIT_TOY=() KEYFRAMES=(--real-size)
if [ -n "$CPU_CHECK" ]; then
    TOY=(--tiny --device cpu) SPLIT_TOY=(--tiny) KEYFRAMES=()
fi

stage "DF-1.3B: kernels x compilation x precision" 120 \
    "${BENCH[@]}" --parts runtime --models DF-1.3B --steps 2 --budget-s 100 "${TOY[@]}" \
    --configs sdpa/eager/bf16 auto/eager/bf16 auto/compiled/bf16 auto/compiled/fp8 all
stage "DF-1.3B: one whole shot" 140 \
    "${BENCH[@]}" --parts shot --shot-model DF-1.3B --shot-steps "$SHOT_STEPS" --shot-budget-gib 8 "${TOY[@]}"
stage "DF-14B: diffusers' default, then the auto kernel compiled, bf16 and FP8" 150 \
    "${BENCH[@]}" --parts runtime --models DF-14B --steps 1 --budget-s 105 "${TOY[@]}" \
    --configs sdpa/eager/bf16 auto/compiled/bf16 auto/compiled/fp8 auto/eager/bf16
# -P: the working tree's storyreel/ folder is not the installed package (generators/ sits beside it)
stage "GPU tests" 60 "$PYTHON" -P -m pytest -q -p no:cacheprovider -m gpu tests/test_skyreels.py
GPUS=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
[ -z "$CPU_CHECK" ] || GPUS=2  # two gloo processes on the CPU stand in for two GPUs
if [ "$GPUS" -gt 1 ]; then
    SPLIT=("$PYTHON" -m torch.distributed.run --standalone)
    SPLIT_ARGS=(--model DF-1.3B --steps 2 "${SPLIT_TOY[@]}" --out "$OUT/sequence_parallel-$GPU.json")
    for n in 2 4 8; do
        [ "$n" -le "$GPUS" ] || break
        stage "DF-1.3B split over $n GPUs (--gpus-per-shot $n)" 60 \
            "${SPLIT[@]}" --nproc_per_node "$n" benchmarks/sequence_parallel.py "${SPLIT_ARGS[@]}"
        if [ "$n" -eq 2 ] && [ -z "$CPU_CHECK" ]; then  # the ring path, which Ulysses hides wherever the heads
            # divide (no CPU kernel can run a ring: it needs the log-sum-exp of attention)
            stage "DF-1.3B split over 2 GPUs as a ring" 60 \
                "${SPLIT[@]}" --nproc_per_node 2 benchmarks/sequence_parallel.py "${SPLIT_ARGS[@]}" --ring
        fi
    done
else
    echo "=== --gpus-per-shot: this machine has $GPUS GPU; splitting one shot needs 2 or more, not measured" \
        | tee -a "$LOG"
fi
stage "FLUX.2 [klein] 4B keyframes: s per keyframe by reference count, peak memory" 55 \
    "$PYTHON" -P benchmarks/keyframes.py "${KEYFRAMES[@]}" --repeats 2 --out "$OUT"
written=$(find "$OUT" -maxdepth 1 -name '*.json' -newermt "@$started" | sort | tr '\n' ' ')
echo "done in $(elapsed)s; results: $written" | tee -a "$LOG"
