#!/usr/bin/env bash
# gpu_acceptance.sh: the GPU measurements issues 11 (fit quality) and 14 (speed, precision) ask
# for, as one prepared run on a lent GPU, in priority order, each stage under its own time limit
# so that what finished is kept when the device time runs out.
#
#   make -j CUDA=1 CUDNN=1 && bash tools/gpu_acceptance.sh OUT [STAGE...]   (from the repository root)
# or, for a GPU machine without a compiler, a bundle built elsewhere (a packing script outside this
# repository, bundle.sh, which also packs the libraries; its run.sh runs a command in the bundle):
#   bash .gpu/run.sh bash ../../tools/gpu_acceptance.sh OUT [STAGE...]
#
# OUT gets at most 6 files: tests.txt, bench.jsonl, torch.jsonl,
# fits.txt (each fit's summary table), fits.json (each fit's EV per area and bin, settings and
# time) and log.txt (what ran when, each step's exit code). Stages (default: all, in this
# order; estimated from the earlier runs' speed on an H200, about 30 minutes in all, more
# than one 15-minute loan and one 10-minute command: run `tests bench`, then `fit`, then
# `precision`, then `teacher small`, each its own command):
#   tests    the GPU tests, FP32 twins and the tf32/bf16 precision checks (~1 min)
#   bench    ./bin/bench W1-W5 at fp32, tf32 and bf16; the PyTorch reference of W1-W5 at its
#            default policy, as written and with --hoist, if a Python with torch is found
#            (tools/bench_torch.py) (~2-3 min)
#   fit      fit_dynamics --preset gpu --device cuda on the preset's virtual primate (1920
#            images, generated first), lstm + conv5:conv2, shipped backbone, and its
#            --time-varied baseline (~6 min)
#   precision  the same fit at bf16 and tf32 (EV within 0.01 of fp32?) (~8 min)
#   teacher  the same fit on the teacher's own backbone, and the teacher's own features through
#            the same readouts (--init teacher --iters 0: the bound) (~6 min)
#   small    the lstm fit and its --time-varied baseline on the cpu preset's 320-image virtual
#            primate at the same settings (the data the issue's first GPU numbers were on) (~4 min)
# A smoke run of the script on a CPU: DEVICE=cpu EXTRA="--iters 2 --batch 2 --splits 2" (the
# fits' flags), STAGES fit/teacher/small (generating the 1920 images takes ~5 minutes on 2 cores:
# copy them into data/ first).
set -uo pipefail
DEVICE=${DEVICE:-cuda}
read -r -a EXTRA <<< "${EXTRA:-}"
OUT=${1:?usage: gpu_acceptance.sh OUT [tests|bench|fit|precision|teacher|small ...]}
shift
STAGES=("$@")
[ ${#STAGES[@]} -gt 0 ] || STAGES=(tests bench fit precision teacher small)
mkdir -p "$OUT"
ROOT=$(cd "$(dirname "$0")/.." && pwd)  # the source tree (tools/bench_torch.py)
log() { echo "gpu_acceptance: $(date +%T) $*" | tee -a "$OUT/log.txt" >&2; }

fit() {  # fit NAME LIMIT_S FLAGS...: one fit_dynamics run; its table appended to OUT/fits.txt
    local name=$1 limit=$2
    shift 2
    # a fit an earlier call's timeout cut keeps its finished splits: resumed if it was started with
    # these flags (fit_dynamics checks), else started over
    local again=--overwrite
    [ -f "runs/gpu_$name/.unfinished/run.json" ] && [ ! -f "runs/gpu_$name/results.json" ] && again=--resume
    log "fit $name: $* ($again)"
    local rc=0
    timeout "$limit" ./bin/fit_dynamics --preset gpu --device "$DEVICE" --out "runs/gpu_$name" "$again" "$@" \
        "${EXTRA[@]}" > "/tmp/gpu_fit_$name.log" 2>&1 || rc=$?
    if [ "$again" = --resume ] && grep -q "was started otherwise" "/tmp/gpu_fit_$name.log"; then
        rc=0
        timeout "$limit" ./bin/fit_dynamics --preset gpu --device "$DEVICE" --out "runs/gpu_$name" --overwrite "$@" \
            "${EXTRA[@]}" > "/tmp/gpu_fit_$name.log" 2>&1 || rc=$?
    fi
    log "fit $name: rc $rc"
    { echo "== $name: $*"; tail -n 4 "/tmp/gpu_fit_$name.log"; } >> "$OUT/fits.txt"
    [ -f "runs/gpu_$name/results.json" ] && python3 - "$name" "runs/gpu_$name/results.json" "$OUT/fits.json" <<'PY'
import json, os, sys
name, path, out = sys.argv[1:4]
r = json.load(open(path))
row = {"name": name, "settings": {k: r["settings"].get(k) for k in
       ("data", "motif", "feedback", "backbone", "batch", "iters", "lr", "precision", "time_varied", "device")},
       "areas": {a: {"ev": v["ev"], "heldout_units": v.get("heldout_units"), "teacher": v.get("teacher"),
                     "ev_per_bin": v.get("ev_per_bin")} for a, v in r["areas"].items()},
       "seconds": r.get("seconds")}
rows = json.load(open(out)) if os.path.exists(out) else []
json.dump(rows + [row], open(out, "w"), indent=1)
PY
}

need_1920() {  # the gpu preset's data, before its fits' time limits start (a fresh machine has no data/);
    # byte for byte what fit_dynamics generates (models/fit/fit_flags.h fit_default_primate)
    [ -f data/virtual_primate_1920.npz ] && return
    log "make_virtual_primate --images 1920"
    timeout 300 ./bin/make_virtual_primate --images 1920 --out data/virtual_primate_1920.npz > /dev/null 2>&1
    log "make_virtual_primate: rc $?"
}

for stage in "${STAGES[@]}"; do
    case $stage in
    tests)
        log "tests"
        timeout 240 ./bin/tests -tc='cuda:*,precision:*' > "$OUT/tests.txt" 2>&1
        log "tests: rc $?"
        ;;
    bench)
        for p in fp32 tf32 bf16; do
            log "bench $p"
            timeout 150 ./bin/bench --device cuda --workload W1,W2,W3,W4,W5 --reps 5 --precision $p \
                >> "$OUT/bench.jsonl"
        done
        PY=
        for c in python3 /opt/*/bin/python3 /opt/*/*/bin/python3; do
            command -v "$c" > /dev/null 2>&1 && "$c" -c 'import torch; assert torch.cuda.is_available()' 2> /dev/null \
                && { PY=$c; break; }
        done
        if [ -n "$PY" ]; then
            log "torch: $PY"
            timeout 200 "$PY" "$ROOT/tools/bench_torch.py" --device cuda --workload W1,W2,W3,W4,W5 --reps 5 \
                > "$OUT/torch.jsonl" 2>&1
            # and with ventral's exact shortcuts (each line says "hoist"), for the engine-to-engine ratio
            timeout 200 "$PY" "$ROOT/tools/bench_torch.py" --device cuda --workload W1,W2,W3,W4,W5 --reps 5 --hoist \
                >> "$OUT/torch.jsonl" 2>&1
        else
            log "torch: no Python with CUDA torch found; the PyTorch reference is not run"
        fi
        ;;
    fit)
        need_1920
        fit default 420 --motif lstm --feedback conv5:conv2
        fit time_varied 180 --time-varied
        ;;
    precision)
        need_1920
        fit bf16 420 --motif lstm --feedback conv5:conv2 --precision bf16
        fit tf32 420 --motif lstm --feedback conv5:conv2 --precision tf32
        ;;
    teacher)
        [ -f data/teacher.npz ] || timeout 120 ./bin/make_virtual_primate --out /tmp/vp_check.npz \
            --write-teacher-backbone data/teacher_backbone.npz --write-teacher data/teacher.npz > /dev/null 2>&1
        need_1920
        fit teacher 420 --motif lstm --feedback conv5:conv2 --backbone data/teacher_backbone.npz
        fit bound 180 --init data/teacher.npz --iters 0
        ;;
    small)
        [ -f data/virtual_primate.npz ] || { timeout 120 ./bin/make_virtual_primate > /dev/null 2>&1;
            log "make_virtual_primate (320 images): rc $?"; }
        fit small 300 --data data/virtual_primate.npz --motif lstm --feedback conv5:conv2
        fit small_tv 120 --data data/virtual_primate.npz --time-varied
        ;;
    *) log "unknown stage '$stage' (tests, bench, fit, precision, teacher, small)" ;;
    esac
done
log "done"
