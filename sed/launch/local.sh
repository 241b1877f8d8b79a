#!/usr/bin/env bash
# Local job backend: run a command here and write its log file.
#
# Usage: sed/launch/local.sh [--gpu N] [--num_threads N] [--mem M] [--time T] <log> <command ...>
#
# The log holds the command line, the start time, everything the command printed, and the end
# time with the exit status, so a failed stage can be diagnosed from the log alone. The output is
# also shown on the console. Exit status: the command's.
set -uo pipefail

num_threads=""
while [[ $# -gt 0 && "$1" == --* ]]; do
  case "$1" in
    --num_threads) num_threads="$2"; shift 2 ;;
    --gpu|--mem|--time) shift 2 ;;  # meaningful for cluster backends only
    *) echo "$0: unknown option $1 (valid: --gpu --num_threads --mem --time)" >&2; exit 2 ;;
  esac
done
if [[ $# -lt 2 ]]; then
  echo "usage: $0 [--gpu N] [--num_threads N] [--mem M] [--time T] <log> <command ...>" >&2
  exit 2
fi
log="$1"; shift
mkdir -p "$(dirname "$log")"
[[ -n "$num_threads" ]] && export OMP_NUM_THREADS="$num_threads"

start=$(date +%s)
{
  echo "# $*"
  echo "# Started at $(date '+%Y-%m-%d %H:%M:%S') on $(hostname)"
} > "$log"
"$@" 2>&1 | tee -a "$log"
rc=${PIPESTATUS[0]}
end=$(date +%s)
echo "# Ended (code $rc) at $(date '+%Y-%m-%d %H:%M:%S'), elapsed time $((end - start)) seconds" >> "$log"
exit "$rc"
