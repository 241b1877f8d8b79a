# shellcheck shell=bash
# Environment for the recipes: the project's virtualenv (built by `make -C tools`).
SED_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export SED_ROOT
if [[ -f "${SED_ROOT}/tools/venv/bin/activate" ]]; then
  # shellcheck disable=SC1091
  source "${SED_ROOT}/tools/venv/bin/activate"
fi
export PYTHONUNBUFFERED=1
# reproducible hashing; tqdm and logging go to the job logs
export PYTHONHASHSEED=0
