#!/usr/bin/env bash
# Single-species detector recipe (clips/<label>/, clips/negative/, long/): every option of
# ../../run.sh applies, and its stages go on after 5 (egs/detector/local/stages.sh):
#   6 report (HH:MM:SS per long file), 7 cut review segments, 8 review in the terminal,
#   9 merge the decisions into the corpus, 10 retrain on it as the next round (--tag round<N+1>)
#   egs/detector/run.sh                          # synthetic owl corpus, stages 0-5
#   egs/detector/run.sh --datadir /data/owls     # your own clips (and long recordings)
#   egs/detector/run.sh --stage 6 --stop_stage 10   # report, review, merge, retrain
# Options of stages 7-8 (before or among the others):
#   --review_max <n>        segments cut per round, 0: every detection [40]
#   --review_order <o>      top (highest scores) | spread (over the score ranks, borderline too) [spread]
#   --review_min_score <x>  drop detections scoring below x [none]
#   --reviewer <name>       saved with each decision [$USER]
# under `sbatch egs/detector/run.sh`, Slurm runs a copy of this script from its spool folder
if [[ -n "${SLURM_JOB_ID:-}" && ! -f "$(dirname "${BASH_SOURCE[0]}")/recipe.yaml" ]]; then
  cd "${SLURM_SUBMIT_DIR}" || exit 1
  [[ -f run.sh ]] || cd ../.. || exit 1  # submitted from egs/detector
else
  cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
fi
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --review_max|--review_order|--review_min_score|--reviewer)
      [[ $# -ge 2 ]] || { echo "$0: $1 needs a value" >&2; exit 2; }
      name=${1#--}; value=$2; shift 2
      case "${name}" in
        review_max) [[ "${value}" =~ ^[0-9]+$ ]] || { echo "$0: --review_max must be a non-negative integer, got '${value}'" >&2; exit 2; }
          export DETECTOR_REVIEW_MAX=${value} ;;
        review_order) [[ "${value}" == top || "${value}" == spread ]] || { echo "$0: --review_order must be top or spread, got '${value}'" >&2; exit 2; }
          export DETECTOR_REVIEW_ORDER=${value} ;;
        review_min_score) [[ "${value}" =~ ^[0-9]*\.?[0-9]+$ ]] || { echo "$0: --review_min_score must be a number, got '${value}'" >&2; exit 2; }
          export DETECTOR_REVIEW_MIN_SCORE=${value} ;;
        reviewer) export DETECTOR_REVIEWER=${value} ;;
      esac ;;
    --help|-h) sed -n '2,13p' "egs/detector/run.sh" | sed 's/^# \{0,1\}//'; echo; exec ./run.sh --help ;;
    *) args+=("$1"); shift ;;
  esac
done
exec ./run.sh --recipe detector "${args[@]}"
