#!/usr/bin/env bash
# Rainforest Connection Species Audio Detection recipe: every option of ../../run.sh applies.
#   egs/rfcx/run.sh --stage 2 --conf conf/eff/v023.yaml
#   egs/rfcx/run.sh --datadir /data/rfcx-species-audio-detection
cd "$(dirname "${BASH_SOURCE[0]}")/../.." && exec ./run.sh --recipe rfcx "$@"
