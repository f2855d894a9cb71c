#!/bin/bash
# sweep_slurm.sh: one configuration of a ./bin/sweep grid per Slurm array task (issue 16).
#
# From the repository root (where bin/ is), with the sweep's own flags:
#   ./bin/sweep --grid paper --out runs/sweep/paper --list          # 17 lines: indices 0-16
#   sbatch --array=0-16 tools/sweep_slurm.sh --grid paper --out runs/sweep/paper
#   ./bin/sweep --grid paper --out runs/sweep/paper --collect       # the report, once all are done
# Each task runs `./bin/sweep FLAGS --index $SLURM_ARRAY_TASK_ID` (the index goes before any
# `--`, which starts the flags for every fit). Give --list, the tasks and --collect the same
# --grid, --data, --out, --quick and `--` flags: a finished run is reused only if it ran
# exactly what the sweep would run. Tasks share DIR through claim files (DIR/claims/), so a
# resubmitted or duplicated index waits for the running one instead of fitting it twice; a
# task that is killed (time limit, preemption) leaves its claim to the next one.
# Without --data the first task generates the virtual primate into data/ (the others wait).
#
# GPUs: add `#SBATCH --gres=gpu:1` and pass `--device cuda` (Slurm sets CUDA_VISIBLE_DEVICES;
# the sweep gives the fit that GPU). Threads per fit: the cores Slurm gives the task.
#
#SBATCH --job-name=ventral-sweep
#SBATCH --cpus-per-task=8
#SBATCH --mem=16G
#SBATCH --time=04:00:00
#SBATCH --output=ventral-sweep_%A_%a.log
set -euo pipefail

if [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then
    echo "sweep_slurm.sh: SLURM_ARRAY_TASK_ID is not set: submit it as an array job," \
         "e.g. sbatch --array=0-16 tools/sweep_slurm.sh --grid paper --out runs/sweep/paper" >&2
    exit 2
fi
case "$SLURM_ARRAY_TASK_ID" in
    '' | *[!0-9]*) echo "sweep_slurm.sh: SLURM_ARRAY_TASK_ID must be a number, got '$SLURM_ARRAY_TASK_ID'" >&2; exit 2 ;;
esac
if [ "$#" -eq 0 ]; then
    echo "sweep_slurm.sh: no sweep flags (expected e.g. --grid paper --out runs/sweep/paper)" >&2
    exit 2
fi

# sbatch runs a copy of this script from its spool: the repository is where it was submitted.
cd "${SLURM_SUBMIT_DIR:-.}"
if [ ! -x bin/sweep ]; then
    echo "sweep_slurm.sh: no bin/sweep in $(pwd): submit from the repository root after make" >&2
    exit 2
fi

# --index K before a `--` (after it, flags go to every fit).
args=()
placed=0
for a in "$@"; do
    if [ "$a" = "--" ] && [ "$placed" = 0 ]; then
        args+=(--index "$SLURM_ARRAY_TASK_ID")
        placed=1
    fi
    args+=("$a")
done
[ "$placed" = 1 ] || args+=(--index "$SLURM_ARRAY_TASK_ID")

echo "sweep_slurm.sh: task $SLURM_ARRAY_TASK_ID on $(hostname): ./bin/sweep ${args[*]}" >&2
exec ./bin/sweep "${args[@]}"
