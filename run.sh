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
#   4  outputs: the recipe's submission writer, thresholds, event tables -> .../infer/<checkpoint>/
#   5  scoring: the recipe's metrics -> results.json and exp/<recipe>/RESULTS.md
# The recipe (egs/<recipe>/recipe.yaml, or a folder given as --recipe path/to/recipe) declares the
# corpus layout, metric(s), submission writer and synthetic corpus; the engine itself is generic.
# Every value reaches Python through argv, never pasted into source.
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
recipe=rfcx               # recipe: a folder under egs/, or a path to a folder holding recipe.yaml
stage=0                   # first stage to run
stop_stage=5              # last stage to run
conf=""                   # experiment config (conf/<family>/<version>.yaml); empty: the recipe's conf
conf_override=""          # dotted config overrides, e.g. "train.max_steps=200 optim.lr=1e-3"
datadir=""                # raw corpus in the recipe's layout (empty: generate the synthetic one)
data_tag=""               # name of the corpus under data/<recipe>/ and dump/<recipe>/
fold=all                  # fold to train / infer: all or an index k
nj=2                      # parallel jobs for data preparation, feature extraction and inference
ngpu=""                   # GPUs for training: 0 forces CPU, N >= 1 CUDA GPUs (DDP); empty: train.device decides
tag=""                    # suffix of the experiment folder: exp/<recipe>/<family>/<version>_<tag>
checkpoint=""             # checkpoint used by stages 3-5: best | last | step<N>; empty: the config's infer.checkpoint
overwrite=false           # redo stages whose outputs are complete
strict=false              # fail on the first unreadable audio file instead of reporting and skipping it
workdir=.                 # where data/, dump/ and exp/ are created
ensemble=""               # conf/ensemble/<name>.yaml: stages 4-5 combine its experiments instead
zero_shot=false           # also score BirdNET's own species predictions (optional extra) as a row
gbdt=false                # also fit LightGBM on the embedding config's windows: the gbdt/<family>_<version> row
help_message=$(cat <<HELP
Usage: $0 [options]
Runs the stages of a sed recipe (see README.md).

Options (default in brackets):
  --recipe <name|dir>      recipe under egs/, or a folder holding recipe.yaml [${recipe}]
  --stage <n>              first stage, 0-5, or a recipe's own stage after 5 [${stage}]
  --stop_stage <n>         last stage, 0-5, or a recipe's own stage after 5 [${stop_stage}]
  --conf <yaml>            experiment config; empty: the recipe's default (its conf key), else
                           conf/cnn/demo.yaml ["${conf}"]
  --conf_override <str>    dotted overrides, e.g. "train.max_steps=200 optim.lr=1e-3" ["${conf_override}"]
  --datadir <dir>          raw corpus in the recipe's layout (e.g. Kaggle's rfcx-species-audio-detection); empty: synthetic ["${datadir}"]
  --data_tag <name>        the corpus's name under data/<recipe>/ and dump/<recipe>/; empty: the --datadir
                           folder's name, 'synth' without --datadir, or (from stage 1 on) the corpus
                           of the latest stage 0 of the recipe ["${data_tag}"]
  --fold <k|all>           fold(s) to train and infer [${fold}]
  --nj <n>                 parallel jobs for stages 0-1 and 3 (stage 3: a JOB array over shares of the recordings) [${nj}]
  --ngpu <n>               GPUs for training: 0 CPU, 1 one GPU, N > 1 DDP over N GPUs per node (torchrun); empty: config's train.device (auto) ["${ngpu}"]
  --tag <str>              experiment folder suffix ["${tag}"]
  --checkpoint <name>      checkpoint for stages 3-5: best | last | step<N>; empty: the config's infer.checkpoint ["${checkpoint}"]
  --overwrite <bool>       redo complete stages: true | false [${overwrite}]
  --strict <bool>          stop at the first unreadable or missing audio file (stages 0-1) instead of
                           listing it in skipped.csv and going on: true | false [${strict}]
  --workdir <dir>          folder that receives data/, dump/ and exp/ [${workdir}]
  --ensemble <yaml>        stages 4-5 for an ensemble of experiments (conf/ensemble/<name>.yaml) ["${ensemble}"]
  --zero_shot <bool>       after stage 3 (and 4-5) also predict and score with BirdNET's own species
                           outputs, untrained: the exp/<recipe>/birdnet/zero_shot row of RESULTS.md
                           (needs make -C tools birdnet; model licence CC BY-NC-SA 4.0) [${zero_shot}]
  --gbdt <bool>            after stage 3 (and 4-5) of an embedding config (features.kind: embedding) also
                           fit a LightGBM no-call detector and species classifier on 5 s windows of its
                           stage-1 dump: the exp/<recipe>/gbdt/<family>_<version> row of RESULTS.md [${gbdt}]
  --help                   show this message
Stages: 0 data prep, 1 features, 2 train, 3 infer, 4 outputs (submission, events), 5 score + RESULTS.md
A recipe may add stages after 5 in egs/<recipe>/local/stages.sh (the detector recipe: 6 report,
7 cut review segments, 8 review, 9 merge, 10 retrain; see egs/detector/run.sh --help).
HELP
)
valid_options="recipe stage stop_stage conf conf_override datadir data_tag fold nj ngpu tag checkpoint overwrite strict workdir ensemble zero_shot gbdt"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --help|-h) echo "${help_message}"; exit 0 ;;
    --*)
      name=${1#--}
      name=${name%%=*}
      if ! [[ " ${valid_options} " == *" ${name} "* ]]; then
        echo "$0: unknown option '$1'" >&2
        # shellcheck disable=SC2001  # GNU sed: one --prefix per word
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

for v in overwrite strict zero_shot gbdt; do
  case "${!v}" in true|false) ;; *) echo "$0: --${v} must be true or false, got '${!v}'" >&2; exit 2 ;; esac
done
for v in stage stop_stage nj; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "$0: --${v} must be a non-negative integer, got '${!v}'" >&2; exit 2; }
done
if [[ -n "${ngpu}" && ! "${ngpu}" =~ ^[0-9]+$ ]]; then
  echo "$0: --ngpu must be a non-negative integer, got '${ngpu}'" >&2; exit 2
fi
(( nj >= 1 )) || { echo "$0: --nj must be at least 1" >&2; exit 2; }
[[ "${fold}" == all || "${fold}" =~ ^[0-9]+$ ]] || { echo "$0: --fold must be 'all' or an integer" >&2; exit 2; }
if [[ -n "${data_tag}" && ! "${data_tag}" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]]; then
  echo "$0: --data_tag must be a simple name (letters, digits, . _ -), got '${data_tag}'" >&2; exit 2
fi
[[ -z "${conf}" || -f "${conf}" ]] || { echo "$0: config file '${conf}' not found" >&2; exit 2; }
[[ -z "${ensemble}" || -f "${ensemble}" ]] || { echo "$0: ensemble config '${ensemble}' not found" >&2; exit 2; }
if [[ -n "${ensemble}" && ${stage} -lt 4 ]]; then
  echo "$0: --ensemble combines trained experiments: use it with --stage 4 (or 5)" >&2; exit 2
fi
if [[ -n "${datadir}" && ! -d "${datadir}" ]]; then
  echo "$0: --datadir '${datadir}' is not a directory (pass the folder holding the unpacked corpus)" >&2
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
: "${train_cmd:?cmd.sh sets it}" "${infer_cmd:?cmd.sh sets it}" "${prep_cmd:?cmd.sh sets it}"

# the placeholder a JOB array substitutes: JOB, unless a path contains it (then JOB1, JOB2 ...)
job_token() {
  local token=JOB n=0 text
  text="${workdir}|${conf}|${datadir}|${tag}|$(pwd)"
  while [[ "${text}" == *"${token}"* ]]; do n=$((n + 1)); token=JOB${n}; done
  echo "${token}"
}
quoted() { printf '%q ' "$@"; }  # a command line to show the user, copy-paste safe

# the recipe and the config, validated once (a typo stops here): one line per value
env_values=$(python -m sed.bin.recipe env --recipe "${recipe}" --conf "${conf}" \
  --conf_override "${conf_override}") || exit 2
mapfile -t env_lines <<< "${env_values}"
recipe_name=${env_lines[0]}
recipe_dir=$(dirname "${env_lines[1]}")
metrics=${env_lines[2]}
writer=${env_lines[3]}
folds=${env_lines[4]}
[[ -n "${checkpoint}" ]] || checkpoint=${env_lines[5]}
conf=${env_lines[6]}
read -r -a prep_args <<< "${env_lines[7]:-}"  # the recipe's prep options of data_prep.py
metadata_blend=${env_lines[8]}
metadata_weight=${env_lines[9]:-}
pseudo=${env_lines[10]}  # pseudo.teachers: stage 2 first pseudo-labels with them
triplet=${env_lines[11]}  # triplet.enabled: an embedding model, stages 3-5 do not apply

family=$(basename "$(dirname "${conf}")")
version=$(basename "${conf}" .yaml)
[[ "${workdir}" == . ]] && workdir=""
workdir=${workdir:+${workdir%/}/}
data_root=${workdir}data/${recipe_name}
latest_tag_file=${data_root}/latest_data_tag
if [[ -z "${data_tag}" ]]; then
  if [[ -n "${datadir}" ]]; then
    data_tag=$(basename "$(cd "${datadir}" && pwd)" | tr -c 'A-Za-z0-9._\n-' '_')
  elif [[ ${stage} -ge 1 && -f "${latest_tag_file}" ]]; then
    data_tag=$(cat "${latest_tag_file}")
  else
    data_tag=synth
  fi
fi
expdir=${workdir}exp/${recipe_name}/${family}/${version}${tag:+_${tag}}
manifests=${data_root}/${data_tag}_${folds}fold
dumpdir=${workdir}dump/${recipe_name}/${data_tag}
override_args=()
[[ -n "${conf_override}" ]] && override_args=(--conf_override "${conf_override}")
strict_args=()
[[ "${strict}" == true ]] && strict_args=(--strict)
JOB=$(job_token)
# what reruns stages up to $1 with this run's options (shown when a later stage finds them missing)
fix_cmd() {
  local args=(./run.sh --recipe "${recipe}" --stage 0 --stop_stage "$1" --conf "${conf}" --data_tag "${data_tag}")
  [[ -n "${conf_override}" ]] && args+=(--conf_override "${conf_override}")
  [[ -n "${datadir}" ]] && args+=(--datadir "${datadir}")
  [[ -n "${workdir}" ]] && args+=(--workdir "${workdir}")
  quoted "${args[@]}"
}
preflight() {  # stage $1 can start: config, manifests, dumps, training data (else exit 2)
  python -m sed.bin.recipe check --stage "$1" --conf "${conf}" --conf_override "${conf_override}" \
    --datadir "${manifests}" --dumpdir "${dumpdir}" --expdir "${expdir}" --fix "$(fix_cmd "$2")" \
    || exit 2
}

# a recipe's own stages after 5: local/stages.sh sets recipe_last_stage and defines
# run_recipe_stages, called after stage 5 with every variable of this script
recipe_last_stage=5
if [[ -f "${recipe_dir}/local/stages.sh" ]]; then
  # shellcheck source=/dev/null
  . "${recipe_dir}/local/stages.sh"
fi
if (( stop_stage > recipe_last_stage )); then
  echo "$0: --stop_stage ${stop_stage}: recipe ${recipe_name} has stages 0-${recipe_last_stage}" >&2
  exit 2
fi

log "recipe=${recipe_name} conf=${conf} data=${manifests} expdir=${expdir} stages ${stage}-${stop_stage}"

# --------------------------------------------------------------------------------------- stage 0
if [[ ${stage} -le 0 && ${stop_stage} -ge 0 ]]; then
  log "stage 0: data preparation"
  raw=${datadir}
  if [[ -z "${raw}" ]]; then
    raw=${data_root}/synth
    ow=(); [[ "${overwrite}" == true ]] && ow=(--overwrite)
    # made (or remade, when the recipe's synth section changed) by the recipe's generator
    ${prep_cmd} "${data_root}/log/synth.log" \
      python -m sed.bin.recipe synth --recipe "${recipe}" --outdir "${raw}" --nj "${nj}" "${ow[@]}"
  else
    python -m sed.bin.recipe layout --recipe "${recipe}" --datadir "${raw}" || exit 2
  fi
  stamp="${manifests}/.prep_stamp"
  # the manifests are redone when the corpus (file list, sizes, label tables) or the folds changed
  stamp_value="$(cd "${raw}" && pwd) folds=${folds}${prep_args[*]:+ prep=${prep_args[*]}} corpus=$(python -m sed.bin.recipe fingerprint "${raw}")"
  if [[ "${overwrite}" == true || ! -f "${stamp}" || "$(cat "${stamp}")" != "${stamp_value}" ]]; then
    rm -f "${stamp}"
    ${prep_cmd} "${manifests}/log/data_prep.log" \
      python "${recipe_dir}/local/data_prep.py" --datadir "${raw}" --outdir "${manifests}" \
        --folds "${folds}" --nj "${nj}" "${strict_args[@]}" "${prep_args[@]}"
    printf '%s\n' "${stamp_value}" > "${stamp}.tmp" && mv "${stamp}.tmp" "${stamp}"
  else
    log "manifests in ${manifests} are complete; skipping"
  fi
  printf '%s\n' "${data_tag}" > "${latest_tag_file}.tmp" && mv "${latest_tag_file}.tmp" "${latest_tag_file}"
fi

# --------------------------------------------------------------------------------------- stage 1
if [[ ${stage} -le 1 && ${stop_stage} -ge 1 ]]; then
  log "stage 1: features -> ${dumpdir}"
  if [[ ! -f "${manifests}/recordings.csv" ]]; then
    echo "stage 1 cannot start: no manifests in ${manifests}" >&2
    echo "run first: $(fix_cmd 0)" >&2
    exit 2
  fi
  ow=(); [[ "${overwrite}" == true ]] && ow=(--overwrite)
  ${prep_cmd} --num_threads "${nj}" "${dumpdir}/log/dump.${version}.log" \
    python -m sed.bin.dump --conf "${conf}" "${override_args[@]}" --datadir "${manifests}" \
      --dumpdir "${dumpdir}" --nj "${nj}" "${ow[@]}" "${strict_args[@]}"
fi

# finished folds, predictions and scores are skipped by their done-markers: only if the experiment
# was made from these manifests (stage 0 since rerun for another corpus would mix the two)
if [[ -z "${ensemble}" && ${stop_stage} -ge 2 && "${overwrite}" == false && -f "${expdir}/meta.json" ]]; then
  python -m sed.bin.recipe trained-on --expdir "${expdir}" --datadir "${manifests}" || exit 2
fi

# --------------------------------------------------------------------------------------- stage 2
if [[ ${stage} -le 2 && ${stop_stage} -ge 2 ]]; then
  log "stage 2: training -> ${expdir}"
  # one check here rather than the same failure in every task of the job array
  preflight 2 1
  if [[ "${fold}" == all ]]; then folds_to_run=$(seq 0 $((folds - 1))); else folds_to_run=${fold}; fi
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
  if [[ ${#todo[@]} -gt 0 && "${pseudo}" == true ]]; then
    # the teachers' per-fold predictions of the unlabelled recordings (kept while current)
    log "stage 2: pseudo-labels of the teachers (pseudo.teachers) -> <teacher>/pseudo/"
    pl_args=(); [[ "${fold}" != all ]] && pl_args=(--fold "${fold}")
    [[ -n "${ngpu}" && "${ngpu}" -ge 1 ]] && pl_args+=(--device cuda)
    [[ "${ngpu}" == 0 ]] && pl_args+=(--device cpu)
    ${infer_cmd} --gpu "$(( ${ngpu:-0} > 0 ? 1 : 0 ))" "${expdir}/pseudo_label.log" \
      python -m sed.bin.pseudo_label --conf "${conf}" "${override_args[@]}" --expdir "${expdir}" \
        --datadir "${manifests}" --dumpdir "${dumpdir}" "${pl_args[@]}" --no_progress
  fi
  if [[ ${#todo[@]} -gt 0 ]]; then
    rm -f "${expdir}"/infer/*/.done*  # predictions of an older model are stale
    # one task per fold, JOB = the fold index: a job array under Slurm, one after the other locally
    train_rc=0
    ${train_cmd} --gpu "${ngpu:-0}" "${JOB}=$(IFS=,; echo "${todo[*]}")" "${expdir}/fold${JOB}/train.log" \
      "${launcher[@]}" -m sed.bin.train --conf "${conf}" "${override_args[@]}" "${device_args[@]}" \
        --datadir "${manifests}" --dumpdir "${dumpdir}" --expdir "${expdir}" --fold "${JOB}" \
        || train_rc=$?
    for k in "${todo[@]}"; do  # done when its task's last start/preempt/end line is a success
      # (Slurm may append lines after the end line, e.g. an out-of-memory notice)
      last=$(grep -E '^# (Started|Preempted|Ended)' "${expdir}/fold${k}/train.log" 2>/dev/null | tail -n 1 || true)
      if [[ "${last}" == "# Ended (code 0)"* ]]; then
        touch "${expdir}/fold${k}/.done"
      fi
    done
    if [[ ${train_rc} -ne 0 ]]; then
      log "stage 2: training failed (exit ${train_rc}; 75: interrupted, rerun to resume); finished folds are kept"
      exit "${train_rc}"
    fi
  fi
fi

if [[ "${triplet}" == true && ${stop_stage} -ge 3 ]]; then
  # no class scores to predict or score: the folds are an embedding extractor
  log "triplet embedding (triplet.enabled): stages 3-5 do not apply; use ${expdir} as an embedding"
  log "extractor: features.embedding.name: experiment, params.expdir: ${expdir} (see conf/emb/v002.yaml)"
  exit 0
fi

inf=${expdir}/infer/${checkpoint}
fold_args=()
done3=${inf}/.done  # predictions of every fold's model; --fold k: of that fold's model only
if [[ "${fold}" != all ]]; then fold_args=(--fold "${fold}"); done3=${inf}/.done.fold${fold}; fi

# --------------------------------------------------------------------------------------- stage 3
if [[ ${stage} -le 3 && ${stop_stage} -ge 3 ]]; then
  log "stage 3: inference (${checkpoint}) -> ${inf}"
  if [[ "${overwrite}" == false && -f "${done3}" ]]; then
    log "predictions are complete; skipping"
  else
    preflight 3 1
    rm -f "${inf}"/.done* # the outputs of stages 4-5 (and of other --fold runs) are stale
    # finished shares of a failed job array are reused (same models and data), unless --overwrite
    [[ "${overwrite}" == true ]] && rm -rf "${inf}/parts"
    infer_args=(--expdir "${expdir}" --datadir "${manifests}" --dumpdir "${dumpdir}" --checkpoint "${checkpoint}" "${fold_args[@]}")
    if [[ ${nj} -le 1 ]]; then
      ${infer_cmd} --gpu "$(( ${ngpu:-0} > 0 ? 1 : 0 ))" "${inf}/infer.log" \
        python -m sed.bin.infer "${infer_args[@]}"
    else
      # --nj jobs (a job array under Slurm), each over every nj-th recording, then one merge
      threads=$(( $(nproc) / nj )); (( threads >= 1 )) || threads=1
      ${infer_cmd} --gpu "$(( ${ngpu:-0} > 0 ? 1 : 0 ))" --num_threads "${threads}" --max_jobs_run "${nj}" \
        "${JOB}=1:${nj}" "${inf}/infer.${JOB}.log" \
        python -m sed.bin.infer "${infer_args[@]}" --part "${JOB}" --nparts "${nj}" --no_progress
      python -m sed.bin.infer "${infer_args[@]}" --merge "${nj}"
    fi
    touch "${done3}"
  fi
fi

# the corpus variant recorded by stage 0 (e.g. a BirdCLEF year) may choose its own metrics and writer
if [[ ${stop_stage} -ge 4 && -f "${manifests}/corpus.json" ]]; then
  mapfile -t out_lines < <(python -m sed.bin.recipe outputs --recipe "${recipe}" --manifests "${manifests}" || echo FAIL)
  [[ "${out_lines[0]}" != FAIL ]] || exit 2
  metrics=${out_lines[0]}
  writer=${out_lines[1]}
fi

# ------------------------------------------------------------------------- stages 4-5 (ensemble)
if [[ -n "${ensemble}" ]]; then
  ens_dir=${workdir}exp/${recipe_name}/ensemble/$(basename "${ensemble}" .yaml)
  if [[ ${stage} -le 4 && ${stop_stage} -ge 4 ]]; then
    log "stage 4: ensemble ${ensemble} -> ${ens_dir} (on the manifests its members were trained on)"
    # shellcheck disable=SC2086  # the recipe's metric names, one word each
    ${infer_cmd} "${ens_dir}/ensemble.log" \
      python -m sed.bin.ensemble --conf "${ensemble}" --outdir "${ens_dir}" \
        --root "${workdir:-.}" --recipe "${recipe_name}" --writer "${writer}" --metric ${metrics}
  fi
  if [[ ${stop_stage} -ge 5 ]]; then
    log "stage 5: results table"
    python -m sed.results --expdir "${workdir}exp/${recipe_name}"
  fi
  log "done (${ens_dir})"
  exit 0
fi

# --------------------------------------------------------------------------------------- stage 4
if [[ ${stage} -le 4 && ${stop_stage} -ge 4 ]]; then
  log "stage 4: outputs (${writer} submission, thresholds, events) -> ${inf}"
  if [[ "${overwrite}" == false && -f "${inf}/.done4" ]]; then
    log "outputs are complete; skipping"
  else
    preflight 4 3
    rm -f "${inf}/.done4" "${inf}/.done5"
    ${infer_cmd} "${inf}/submit.log" \
      python -m sed.bin.submit --expdir "${expdir}" --datadir "${manifests}" \
        --checkpoint "${checkpoint}" --writer "${writer}"
    if [[ "${metadata_blend}" == true ]]; then  # infer.metadata_blend: <expdir>+meta, its own row
      weight_args=()
      [[ -n "${metadata_weight}" ]] && weight_args=(--weight "${metadata_weight}")
      # shellcheck disable=SC2086  # the recipe's metric names, one word each
      ${infer_cmd} "${inf}/metadata_blend.log" \
        python -m sed.bin.metadata_blend --expdir "${expdir}" --datadir "${manifests}" \
          --checkpoint "${checkpoint}" --writer "${writer}" --metric ${metrics} "${weight_args[@]}"
    fi
    touch "${inf}/.done4"
  fi
fi

# --------------------------------------------------------------------------------------- stage 5
if [[ ${stage} -le 5 && ${stop_stage} -ge 5 ]]; then
  log "stage 5: scoring (${metrics})"
  if [[ "${overwrite}" == false && -f "${inf}/.done5" ]]; then
    log "scores are complete; skipping"
  else
    preflight 5 3
    rm -f "${inf}/.done5"
    # shellcheck disable=SC2086  # the recipe's metric names, one word each
    ${infer_cmd} "${expdir}/score.log" \
      python -m sed.bin.score --expdir "${expdir}" --datadir "${manifests}" --recipe "${recipe_name}" \
        --checkpoint "${checkpoint}" --metric ${metrics}
    touch "${inf}/.done5"
  fi
  log "results: ${expdir}/results.json, ${workdir}exp/${recipe_name}/RESULTS.md"
fi

# stages 4-5 of predictions made without training (folder $1, checkpoint name $2): once each
outputs_and_scores() {
  local inf=$1/infer/$2
  if [[ ${stop_stage} -ge 4 && ! -f "${inf}/.done4" ]]; then
    ${infer_cmd} "${inf}/submit.log" python -m sed.bin.submit --expdir "$1" \
      --datadir "${manifests}" --checkpoint "$2" --writer "${writer}"
    touch "${inf}/.done4"
  fi
  if [[ ${stop_stage} -ge 5 && ! -f "${inf}/.done5" ]]; then
    # shellcheck disable=SC2086  # the recipe's metric names, one word each
    ${infer_cmd} "$1/score.log" python -m sed.bin.score --expdir "$1" \
      --datadir "${manifests}" --recipe "${recipe_name}" --checkpoint "$2" --metric ${metrics}
    touch "${inf}/.done5"
  fi
}

# --------------------------------------------------------------- BirdNET zero-shot row (optional)
if [[ "${zero_shot}" == true && ${stop_stage} -ge 3 ]]; then
  zs_dir=${workdir}exp/${recipe_name}/birdnet/zero_shot
  log "BirdNET zero-shot baseline (no training) -> ${zs_dir}"
  zs_args=(--datadir "${manifests}" --dumpdir "${dumpdir}" --outdir "${zs_dir}" --nj "${nj}" --no_progress)
  # classes -> BirdNET labels: the recipe's edited mapping, else the download's taxonomy, else names
  if [[ -f "${recipe_dir}/local/birdnet_mapping.csv" ]]; then
    zs_args+=(--mapping "${recipe_dir}/local/birdnet_mapping.csv")
  elif [[ -n "${datadir}" && -f "${datadir}/taxonomy.csv" ]]; then
    zs_args+=(--mapping "${datadir}/taxonomy.csv")
  elif [[ -n "${datadir}" && -f "${datadir}/train_metadata.csv" ]]; then
    zs_args+=(--mapping "${datadir}/train_metadata.csv")
  fi
  [[ "${overwrite}" == true ]] && zs_args+=(--overwrite)
  ${infer_cmd} "${zs_dir}/zero_shot.log" python -m sed.bin.zero_shot "${zs_args[@]}" "${strict_args[@]}"
  outputs_and_scores "${zs_dir}" zero_shot
fi

# ------------------------------------------------------------- Embeddings + GBDT row (optional)
if [[ "${gbdt}" == true && ${stop_stage} -ge 3 ]]; then
  gb_dir=${workdir}exp/${recipe_name}/gbdt/${family}_${version}${tag:+_${tag}}
  log "Embeddings + GBDT on the stage-1 embedding dump of ${conf} -> ${gb_dir}"
  gb_args=(--datadir "${manifests}" --dumpdir "${dumpdir}" --conf "${conf}" "${override_args[@]}")
  gb_args+=(--outdir "${gb_dir}" --num_threads "${nj}" --no_progress)
  [[ "${overwrite}" == true ]] && gb_args+=(--overwrite)
  ${infer_cmd} "${gb_dir}/gbdt.log" python -m sed.bin.gbdt "${gb_args[@]}"
  outputs_and_scores "${gb_dir}" gbdt
fi

if (( stop_stage > 5 )); then
  run_recipe_stages
fi

log "done (${expdir}); compare runs with: tensorboard --logdir ${workdir}exp/${recipe_name}"
