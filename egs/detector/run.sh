#!/usr/bin/env bash
# Single-species detector recipe (clips/<label>/, clips/negative/, long/): every option of
# ../../run.sh applies.
#   egs/detector/run.sh                          # synthetic owl corpus, stages 0-5
#   egs/detector/run.sh --datadir /data/owls     # your own clips (and long recordings)
# under `sbatch egs/detector/run.sh`, Slurm runs a copy of this script from its spool folder
if [[ -n "${SLURM_JOB_ID:-}" && ! -f "$(dirname "${BASH_SOURCE[0]}")/recipe.yaml" ]]; then
  cd "${SLURM_SUBMIT_DIR}" || exit 1
  [[ -f run.sh ]] || cd ../.. || exit 1  # submitted from egs/detector
else
  cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
fi
exec ./run.sh --recipe detector "$@"
