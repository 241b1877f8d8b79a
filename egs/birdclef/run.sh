#!/usr/bin/env bash
# BirdCLEF recipe (Kaggle 2021-2025): every option of ../../run.sh applies.
#   egs/birdclef/run.sh                                      # synthetic 2025 corpus, stages 0-5
#   egs/birdclef/run.sh --datadir /data/birdclef-2024        # a Kaggle download (year detected)
#   egs/birdclef/run.sh --stage 2 --conf conf/timm/bc004.yaml
# under `sbatch egs/birdclef/run.sh`, Slurm runs a copy of this script from its spool folder
if [[ -n "${SLURM_JOB_ID:-}" && ! -f "$(dirname "${BASH_SOURCE[0]}")/recipe.yaml" ]]; then
  cd "${SLURM_SUBMIT_DIR}" || exit 1
  [[ -f run.sh ]] || cd ../.. || exit 1  # submitted from egs/birdclef
else
  cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
fi
exec ./run.sh --recipe birdclef "$@"
