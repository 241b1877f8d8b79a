#!/usr/bin/env bash
# Rainforest Connection Species Audio Detection recipe: every option of ../../run.sh applies.
#   egs/rfcx/run.sh --stage 2 --conf conf/eff/v023.yaml
#   egs/rfcx/run.sh --datadir /data/rfcx-species-audio-detection
# under `sbatch egs/rfcx/run.sh`, Slurm runs a copy of this script from its spool folder
if [[ -n "${SLURM_JOB_ID:-}" && ! -f "$(dirname "${BASH_SOURCE[0]}")/recipe.yaml" ]]; then
  cd "${SLURM_SUBMIT_DIR}" || exit 1
  [[ -f run.sh ]] || cd ../.. || exit 1  # submitted from egs/rfcx
else
  cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
fi
exec ./run.sh --recipe rfcx "$@"
