#!/usr/bin/env bash
# The one command a GPU machine runs (docs/gpu.md: "Measured on a GPU"): install offline, smoke test, bench.
#
#   python bench/gpu_wheelhouse.py download --out .whl    # first, here (online): the wheels the GPU image lacks
#   bash bench/gpu_session.sh                             # there, from the repository root, with .whl carried along
#   bash bench/gpu_session.sh --dry-run                   # here, on the CPU at toy sizes (tests/test_gpu_session.py)
#
# Writes into $OUT (default ./bench-gpu-out), each file as soon as its part ends, five small files:
#   env.txt      torch, CUDA and device names (first), and what was installed
#   smoke.jsonl  one line per smoke check (bench/gpu_smoke.py)
#   gpu.json     bench/gpu.py's rows and the machine, rewritten after every step
#   gpu.csv      the same rows
#   session.log  everything printed
# Within 8 minutes on one H100: install about 20 s, smoke test at most SMOKE_S (120 s), bench at most BENCH_S (330 s).
# Exit status: 0 all well, 1 a smoke check or the bench failed, 3 the install failed.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=""
[ "${1:-}" = "--dry-run" ] && DRY="--dry-run"
OUT="${OUT:-$PWD/bench-gpu-out}"
PY="${PYTHON:-python3}"
SITE="${SITE:-$(mktemp -d /tmp/particle-nas-site.XXXXXX)}"
if [ -n "$DRY" ]; then  # the CPU is far slower than a GPU, even at toy sizes
  SMOKE_S="${SMOKE_S:-600}" BENCH_S="${BENCH_S:-600}"
else
  SMOKE_S="${SMOKE_S:-120}" BENCH_S="${BENCH_S:-330}"
fi
mkdir -p "$OUT"
exec > >(tee -a "$OUT/session.log") 2>&1
export PYTHONUNBUFFERED=1

# 1. what this machine is: before anything can fail
"$PY" - <<'PY' | tee "$OUT/env.txt"
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
print("cuda available", torch.cuda.is_available(), "devices", [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
PY

# 2. install offline: the carried wheels (none in a dry run: this machine has them), then the project, into one folder
if [ -z "$DRY" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .whl/*.whl || { echo "gpu_session: the wheels did not install" >&2; exit 3; }
fi
"$PY" bench/gpu_wheelhouse.py install-project --target "$SITE" | tee -a "$OUT/env.txt" || exit 3
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
(cd /tmp && "$PY" -c "import particle_nas.evaluators as e, particle_nas.search, optuna, torch_pruning, fvcore, plotly; print('particle_nas from', e.__file__)") | tee -a "$OUT/env.txt" || { echo "gpu_session: particle_nas does not import" >&2; exit 3; }

# 3. smoke test, under its own timeout
status=0
timeout "$SMOKE_S" "$PY" bench/gpu_smoke.py --out "$OUT" $DRY
code=$?
[ $code = 124 ] && echo "gpu_session: the smoke test ran out of its ${SMOKE_S} s (smoke.jsonl holds the checks that ended)"
[ $code = 0 ] || status=1

# 4. the bench: steps that would start past its budget are skipped; every step's rows are written when it ends
if [ -n "$DRY" ]; then
  BENCH_ARGS=(--concurrency 1 2 --per-process 1 --cpu-trials 1 --budget "$((BENCH_S - 30))" --step-timeout 120)
else
  BENCH_ARGS=(--budget "$((BENCH_S - 40))" --step-timeout 120)
fi
timeout "$BENCH_S" "$PY" bench/gpu.py --out "$OUT" $DRY "${BENCH_ARGS[@]}"
code=$?
[ $code = 124 ] && echo "gpu_session: the bench ran out of its ${BENCH_S} s (gpu.json holds the steps that ended)"
[ $code = 0 ] || status=1
echo "gpu_session: done (status $status); results in $OUT"
exit $status
