#!/usr/bin/env bash
# sed stage engine: runs the stages of a recipe from data preparation to the results table.
#
#   ./run.sh                                    # default recipe (rfcx), synthetic corpus, all stages
#   ./run.sh --stage 2 --conf conf/eff/v023.yaml
#   ./run.sh --datadir /data/rfcx-species-audio-detection --conf conf/cnn/demo.yaml
#
# Stages (DESIGN §3):
#   0  data preparation: raw corpus (--datadir) -> data/<recipe>/ manifests; without --datadir the
#      recipe's synthetic corpus is generated into data/<recipe>/synth first
#   1  features: decode, resample, log-mel (+ speed-perturbed copies) -> dump/<recipe>/<feat>/
#   2  training of every fold (or --fold k) -> exp/<recipe>/<family>/<version>/fold<k>/
#   3  inference: out-of-fold and test predictions over whole recordings -> .../infer/<checkpoint>/
#   4  outputs: Kaggle submission.csv
#   5  scoring: results.json and exp/<recipe>/RESULTS.md
# Every stage skips work that is already complete (a done-marker written last) unless --overwrite.
set -euo pipefail

# under `sbatch ./run.sh`, Slurm runs a copy of this script from its spool folder
if [[ -n "${SLURM_JOB_ID:-}" && ! -f "$(dirname "${BASH_SOURCE[0]}")/cmd.sh" ]]; then
  cd "${SLURM_SUBMIT_DIR}"
else
  cd "$(dirname "${BASH_SOURCE[0]}")"
fi


log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

# ------------------------------------------------------------------------------------- options
recipe=rfcx               # recipe folder under egs/
stage=0                   # first stage to run
stop_stage=5              # last stage to run
conf=conf/cnn/demo.yaml   # experiment config (conf/<family>/<version>.yaml)
conf_override=""          # dotted config overrides, e.g. "train.max_steps=200 optim.lr=1e-3"
datadir=""                # raw corpus in the recipe's layout (empty: generate the synthetic one)
fold=all                  # fold to train / infer: all or an index k
nj=2                      # parallel jobs for data preparation, feature extraction and inference
ngpu=""                   # GPUs for training: 0 forces CPU, N >= 1 CUDA GPUs (DDP); empty: train.device decides
tag=""                    # suffix of the experiment folder: exp/<recipe>/<family>/<version>_<tag>
checkpoint=best           # checkpoint used by stages 3-5: best | last | step<N>
overwrite=false           # redo stages whose outputs are complete
workdir=.                 # where data/, dump/ and exp/ are created
ensemble=""               # conf/ensemble/<name>.yaml: stages 4-5 combine its experiments instead
help_message=$(cat <<EOF
Usage: $0 [options]
Runs the stages of a sed recipe (see README.md).

Options (default in brackets):
  --recipe <name>          recipe under egs/ [${recipe}]
  --stage <n>              first stage, 0-5 [${stage}]
  --stop_stage <n>         last stage, 0-5 [${stop_stage}]
  --conf <yaml>            experiment config [${conf}]
  --conf_override <str>    dotted overrides, e.g. "train.max_steps=200 optim.lr=1e-3" ["${conf_override}"]
  --datadir <dir>          raw corpus (e.g. Kaggle's rfcx-species-audio-detection); empty: synthetic ["${datadir}"]
  --fold <k|all>           fold(s) to train and infer [${fold}]
  --nj <n>                 parallel jobs for stages 0-1 and 3 (stage 3: a JOB array over shares of the recordings) [${nj}]
  --ngpu <n>               GPUs for training: 0 CPU, 1 one GPU, N > 1 DDP over N GPUs per node (torchrun); empty: config's train.device (auto) ["${ngpu}"]
  --tag <str>              experiment folder suffix ["${tag}"]
  --checkpoint <name>      checkpoint for stages 3-5: best | last | step<N> [${checkpoint}]
  --overwrite <bool>       redo complete stages: true | false [${overwrite}]
  --workdir <dir>          folder that receives data/, dump/ and exp/ [${workdir}]
  --ensemble <yaml>        stages 4-5 for an ensemble of experiments (conf/ensemble/<name>.yaml) ["${ensemble}"]
  --help                   show this message
Stages: 0 data prep, 1 features, 2 train, 3 infer, 4 submission, 5 score + RESULTS.md
EOF
)
valid_options="recipe stage stop_stage conf conf_override datadir fold nj ngpu tag checkpoint overwrite workdir ensemble"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --help|-h) echo "${help_message}"; exit 0 ;;
    --*)
      name=${1#--}
      name=${name%%=*}
      if ! [[ " ${valid_options} " == *" ${name} "* ]]; then
        echo "$0: unknown option '$1'" >&2
        echo "valid options: $(sed 's/[^ ]* */--&/g' <<< "${valid_options}") --help" >&2
        exit 2
      fi
      if [[ "$1" == *=* ]]; then
        value=${1#*=}; shift
      else
        if [[ $# -lt 2 ]]; then echo "$0: option '$1' needs a value" >&2; exit 2; fi
        value=$2; shift 2
      fi
      printf -v "${name}" '%s' "${value}"
      ;;
    *) echo "$0: unexpected argument '$1' (options start with --; see --help)" >&2; exit 2 ;;
  esac
done

case "${overwrite}" in true|false) ;; *) echo "$0: --overwrite must be true or false" >&2; exit 2 ;; esac
for v in stage stop_stage nj; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "$0: --${v} must be a non-negative integer, got '${!v}'" >&2; exit 2; }
done
if [[ -n "${ngpu}" && ! "${ngpu}" =~ ^[0-9]+$ ]]; then
  echo "$0: --ngpu must be a non-negative integer, got '${ngpu}'" >&2; exit 2
fi
[[ "${fold}" == all || "${fold}" =~ ^[0-9]+$ ]] || { echo "$0: --fold must be 'all' or an integer" >&2; exit 2; }
[[ -d "egs/${recipe}" ]] || { echo "$0: no recipe egs/${recipe} (have: $(ls egs | tr '\n' ' '))" >&2; exit 2; }
[[ -f "${conf}" ]] || { echo "$0: config file '${conf}' not found" >&2; exit 2; }
[[ -z "${ensemble}" || -f "${ensemble}" ]] || { echo "$0: ensemble config '${ensemble}' not found" >&2; exit 2; }
if [[ -n "${ensemble}" && ${stage} -lt 4 ]]; then
  echo "$0: --ensemble combines trained experiments: use it with --stage 4 (or 5)" >&2; exit 2
fi
if [[ -n "${datadir}" && ! -d "${datadir}" ]]; then
  echo "$0: --datadir '${datadir}' is not a directory (pass the folder holding train/, test/ and the CSVs)" >&2
  exit 2
fi

# ----------------------------------------------------------------------------------- environment
if [[ ! -x tools/venv/bin/python ]]; then
  log "tools/venv not found: building it (make -C tools), once"
  make -C tools
fi
# shellcheck disable=SC1091
. ./path.sh
# shellcheck disable=SC1091
. ./cmd.sh

recipe_get() {  # value of a key of egs/<recipe>/recipe.yaml (dotted for nested keys)
  python - "egs/${recipe}/recipe.yaml" "$1" <<'PY'
import sys, yaml
node = yaml.safe_load(open(sys.argv[1]))
for part in sys.argv[2].split("."):
    node = node[part]
def arg(v):
    return " ".join(map(str, v)) if isinstance(v, list) else str(v)
print(" ".join(f"--{k} {arg(v)}" for k, v in node.items()) if isinstance(node, dict) else arg(node))
PY
}

family=$(basename "$(dirname "${conf}")")
version=$(basename "${conf}" .yaml)
[[ "${workdir}" == . ]] && workdir=""
workdir=${workdir:+${workdir%/}/}
expdir=${workdir}exp/${recipe}/${family}/${version}${tag:+_${tag}}
manifests=${workdir}data/${recipe}
dumpdir=${workdir}dump/${recipe}
override_args=()
[[ -n "${conf_override}" ]] && override_args=(--conf_override "${conf_override}")
progress_args=()

log "recipe=${recipe} conf=${conf} expdir=${expdir} stages ${stage}-${stop_stage}"

# --------------------------------------------------------------------------------------- stage 0
if [[ ${stage} -le 0 && ${stop_stage} -ge 0 ]]; then
  log "stage 0: data preparation"
  raw=${datadir}
  if [[ -z "${raw}" ]]; then
    raw=${manifests}/synth
    synth_args=$(recipe_get synth)
    # regenerate when the recipe's synth settings changed since the corpus was made
    if [[ "${overwrite}" == true || ! -f "${raw}/.complete" || "$(cat "${raw}/.run_args" 2>/dev/null)" != "${synth_args}" ]]; then
      log "no --datadir: generating the synthetic ${recipe} corpus into ${raw}"
      rm -f "${raw}/.run_args"
      # shellcheck disable=SC2086
      ${prep_cmd} "${manifests}/log/synth.log" \
        python -m sed.data.synth --outdir "${raw}" --nj "${nj}" --progress false ${synth_args}
      echo "${synth_args}" > "${raw}/.run_args"
    else
      log "synthetic corpus ${raw} is complete; skipping generation"
    fi
  fi
  folds=$(python -c "from sed.config import load_config; c, _ = load_config('${conf}', '''${conf_override}'''); print(c.data.folds)")
  stamp="${manifests}/.prep_stamp"
  # the manifests are redone when the corpus, its version or the number of folds changed
  stamp_value="${raw} folds=${folds} corpus=$(md5sum < "${raw}/.complete" 2>/dev/null | cut -c1-12)"
  if [[ "${overwrite}" == true || ! -f "${stamp}" || "$(cat "${stamp}" 2>/dev/null)" != "${stamp_value}" ]]; then
    rm -f "${stamp}"
    ${prep_cmd} "${manifests}/log/data_prep.log" \
      python "egs/${recipe}/local/data_prep.py" --datadir "${raw}" --outdir "${manifests}" \
        --folds "${folds}" --nj "${nj}"
    echo "${stamp_value}" > "${stamp}"
  else
    log "manifests in ${manifests} are complete; skipping"
  fi
fi

# --------------------------------------------------------------------------------------- stage 1
if [[ ${stage} -le 1 && ${stop_stage} -ge 1 ]]; then
  log "stage 1: features"
  ow=(); [[ "${overwrite}" == true ]] && ow=(--overwrite)
  ${prep_cmd} --num_threads "${nj}" "${dumpdir}/log/dump.$(basename "${conf}" .yaml).log" \
    python -m sed.bin.dump --conf "${conf}" "${override_args[@]}" --datadir "${manifests}" \
      --dumpdir "${dumpdir}" --nj "${nj}" "${ow[@]}"
fi

# --------------------------------------------------------------------------------------- stage 2
if [[ ${stage} -le 2 && ${stop_stage} -ge 2 ]]; then
  log "stage 2: training -> ${expdir}"
  n_folds=$(python -c "from sed.config import load_config; c, _ = load_config('${conf}', '''${conf_override}'''); print(c.data.folds)")
  if [[ "${fold}" == all ]]; then folds_to_run=$(seq 0 $((n_folds - 1))); else folds_to_run=${fold}; fi
  device_args=()
  [[ "${ngpu}" == 0 ]] && device_args=(--conf_override "train.device=cpu")
  [[ -n "${ngpu}" && "${ngpu}" -ge 1 ]] && device_args=(--conf_override "train.device=cuda")
  launcher=(python)  # N > 1 GPUs: one process per GPU, DistributedDataParallel
  [[ -n "${ngpu}" && "${ngpu}" -gt 1 ]] && launcher=(sed/launch/torchrun.sh "${ngpu}")
  todo=()  # folds without a finished model
  for k in ${folds_to_run}; do
    if [[ "${overwrite}" == true ]]; then rm -rf "${expdir}/fold${k}"; fi
    if [[ -f "${expdir}/fold${k}/.done" ]]; then
      log "fold ${k} is trained (${expdir}/fold${k}/.done); skipping"
      continue
    fi
    mkdir -p "${expdir}/fold${k}"
    todo+=("${k}")
  done
  if [[ ${#todo[@]} -gt 0 ]]; then
    rm -f "${expdir}"/infer/*/.done  # predictions of an older model are stale
    # one task per fold, JOB = the fold index: a job array under Slurm, one after the other locally
    train_rc=0
    ${train_cmd} --gpu "${ngpu:-0}" "JOB=$(IFS=,; echo "${todo[*]}")" "${expdir}/foldJOB/train.log" \
      "${launcher[@]}" -m sed.bin.train --conf "${conf}" "${override_args[@]}" "${device_args[@]}" \
        --datadir "${manifests}" --dumpdir "${dumpdir}" --expdir "${expdir}" --fold JOB \
        "${progress_args[@]}" || train_rc=$?
    for k in "${todo[@]}"; do  # a fold is done when its task's log ends with status 0
      if [[ "$(tail -n 1 "${expdir}/fold${k}/train.log" 2>/dev/null)" == "# Ended (code 0)"* ]]; then
        touch "${expdir}/fold${k}/.done"
      fi
    done
    if [[ ${train_rc} -ne 0 ]]; then
      log "stage 2: training failed (exit ${train_rc}; 75: interrupted, rerun to resume); finished folds are kept"
      exit "${train_rc}"
    fi
  fi
fi

# --------------------------------------------------------------------------------------- stage 3
if [[ ${stage} -le 3 && ${stop_stage} -ge 3 ]]; then
  log "stage 3: inference (${checkpoint}) -> ${expdir}/infer/${checkpoint}"
  if [[ "${overwrite}" == false && -f "${expdir}/infer/${checkpoint}/.done" ]]; then
    log "predictions are complete; skipping"
  else
    rm -f "${expdir}/infer/${checkpoint}/.done"
    infer_args=(--expdir "${expdir}" --datadir "${manifests}" --dumpdir "${dumpdir}" --checkpoint "${checkpoint}")
    if [[ ${nj} -le 1 ]]; then
      ${infer_cmd} --gpu "$(( ${ngpu:-0} > 0 ? 1 : 0 ))" "${expdir}/infer/${checkpoint}/infer.log" \
        python -m sed.bin.infer "${infer_args[@]}"
    else
      # --nj jobs (a job array under Slurm), each over every nj-th recording, then one merge
      threads=$(( $(nproc) / nj )); (( threads >= 1 )) || threads=1
      ${infer_cmd} --gpu "$(( ${ngpu:-0} > 0 ? 1 : 0 ))" --num_threads "${threads}" --max_jobs_run "${nj}" \
        "JOB=1:${nj}" "${expdir}/infer/${checkpoint}/infer.JOB.log" \
        python -m sed.bin.infer "${infer_args[@]}" --part JOB --nparts "${nj}" --no_progress
      python -m sed.bin.infer "${infer_args[@]}" --merge "${nj}"
    fi
    touch "${expdir}/infer/${checkpoint}/.done"
  fi
fi

# ------------------------------------------------------------------------- stages 4-5 (ensemble)
if [[ -n "${ensemble}" ]]; then
  ens_dir=${workdir}exp/${recipe}/ensemble/$(basename "${ensemble}" .yaml)
  if [[ ${stage} -le 4 && ${stop_stage} -ge 4 ]]; then
    log "stage 4: ensemble ${ensemble} -> ${ens_dir}"
    ${infer_cmd} "${ens_dir}/ensemble.log" \
      python -m sed.bin.ensemble --conf "${ensemble}" --datadir "${manifests}" --outdir "${ens_dir}" \
        --root "${workdir:-.}" --recipe "${recipe}"
  fi
  if [[ ${stop_stage} -ge 5 ]]; then
    log "stage 5: results table"
    python -m sed.results --expdir "${workdir}exp/${recipe}"
  fi
  log "done (${ens_dir})"
  exit 0
fi

# --------------------------------------------------------------------------------------- stage 4
if [[ ${stage} -le 4 && ${stop_stage} -ge 4 ]]; then
  log "stage 4: submission"
  ${infer_cmd} "${expdir}/infer/${checkpoint}/submit.log" \
    python -m sed.bin.submit --expdir "${expdir}" --datadir "${manifests}" --checkpoint "${checkpoint}"
fi

# --------------------------------------------------------------------------------------- stage 5
if [[ ${stage} -le 5 && ${stop_stage} -ge 5 ]]; then
  log "stage 5: scoring"
  ${infer_cmd} "${expdir}/score.log" \
    python -m sed.bin.score --expdir "${expdir}" --datadir "${manifests}" --recipe "${recipe}" \
      --checkpoint "${checkpoint}"
  log "results: ${expdir}/results.json, ${workdir}exp/${recipe}/RESULTS.md"
fi

log "done (${expdir}); compare runs with: tensorboard --logdir ${workdir}exp/${recipe}"
