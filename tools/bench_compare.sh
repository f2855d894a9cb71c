#!/usr/bin/env bash
# bench_compare.sh: ventral against PyTorch eager on W1-W5 (issue 14), on this machine, with the
# same threads, batch and steps, alternated (ventral, PyTorch, ventral, PyTorch, ...) so that a
# change in the machine's load hits both sides; the best run of each side is compared.
#
#   tools/bench_compare.sh                              # W1 W2 W5, 2 threads, 2 rounds
#   tools/bench_compare.sh --workloads W1,W4 --threads 4 --rounds 3 --batch 32
#
# Prints the CPU, the same-run OpenBLAS sgemm rate and PyTorch's version, then one Markdown
# row per workload: ventral's runs, PyTorch's runs as the equations read and with --hoist (the
# same shortcuts as ventral's unroll: conv1 once per image, zero states skipped, conv5's small
# map into conv2 through its resize taps), best / best ratios.
# Needs bin/bench (make) and a python3 with torch (Debian's python3-torch; /usr/bin/python3
# is tried first).
set -euo pipefail
cd "$(dirname "$0")/.."
workloads=W1,W2,W5 threads=2 rounds=2 batch=0 steps=0 reps=1
while [ $# -gt 0 ]; do
    case "$1" in
        --workloads) workloads=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --batch) batch=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --reps) reps=$2; shift 2 ;;
        -h | --help) sed -n 2,12p "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench_compare.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
for v in threads rounds batch steps reps; do
    case "${!v}" in '' | *[!0-9]*) echo "bench_compare.sh: --$v expects a number, got '${!v}'" >&2; exit 2 ;; esac
done
[ -x bin/bench ] || { echo "bench_compare.sh: bin/bench not built (run make)" >&2; exit 2; }
py=""
for p in /usr/bin/python3 python3; do
    if command -v "$p" >/dev/null && "$p" -c "import torch" 2>/dev/null; then py=$p; break; fi
done
[ -n "$py" ] || { echo "bench_compare.sh: no python3 with torch (apt-get install python3-torch)" >&2; exit 2; }

field() { grep -o "\"$1\": *[0-9.e+-]*" | head -1 | sed 's/.*: *//'; }
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; threads $threads"
echo "pytorch: $("$py" -c 'import torch; print(torch.__version__, "(", torch.__config__.show().split("CPU capability usage: ")[1].split()[0], ")")' 2>/dev/null || echo '?')"
echo
echo "| workload | ventral ms/iter (runs) | PyTorch ms/iter (runs) | PyTorch --hoist (runs) | best PyTorch / best ventral | same, --hoist | sgemm GFLOP/s (ventral's runs) |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for w in ${workloads//,/ }; do
    vs=() ts=() hs=() gs=()
    for ((r = 0; r < rounds; r++)); do
        out=$(./bin/bench --workload "$w" --threads "$threads" --reps "$reps" --batch "$batch" --steps "$steps" 2>/dev/null)
        vs+=("$(echo "$out" | grep "\"workload\":\"$w\"" | field ms_per_iter)")
        gs+=("$(echo "$out" | grep '"workload":"sgemm"' | field gflops)")
        ts+=("$("$py" tools/bench_torch.py --workload "$w" --threads "$threads" --reps "$reps" --warmup 1 \
                 --batch "$batch" --steps "$steps" | field ms_per_iter)")
        hs+=("$("$py" tools/bench_torch.py --workload "$w" --threads "$threads" --reps "$reps" --warmup 1 \
                 --batch "$batch" --steps "$steps" --hoist | field ms_per_iter)")
    done
    best() { printf '%s\n' "$@" | sort -g | head -1; }
    best_v=$(best "${vs[@]}") best_t=$(best "${ts[@]}") best_h=$(best "${hs[@]}")
    ratio() { awk -v a="$1" -v b="$best_v" 'BEGIN { printf "%.2fx", a / b }'; }
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$w" "$(printf '%.0f ' "${vs[@]}")" "$(printf '%.0f ' "${ts[@]}")" \
        "$(printf '%.0f ' "${hs[@]}")" "$(ratio "$best_t")" "$(ratio "$best_h")" "$(printf '%.0f ' "${gs[@]}")"
done
