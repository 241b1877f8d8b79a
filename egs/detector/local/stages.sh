# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154  # sourced by run.sh, which defines the variables read here
# and reads recipe_last_stage
# Stages 6-10 of the detector recipe: seed 002's loop that grows the dataset by listening to the
# detections of the long files. Sourced by ../../run.sh (which defines every variable used here)
# after its stages 0-5:
#    6 report   a report per long file from stage 4's detections (HH:MM:SS spans, counts per
#               hour; with an answer key, precision and recall)  -> <infer>/report/
#    7 cut      review segments (detections with context)       -> <infer>/review/
#    8 review   y/n/u/s/r/b/q per segment in the terminal, saved at once, resumable
#                                                               -> <infer>/review/decisions.csv
#    9 merge    decisions -> <corpus>/clips/<label>/ (yes), clips/negative/ (no), reviewed.csv
#   10 retrain  stages 0-5 on the grown corpus as the next round: --tag round<N+1> and
#               --data_tag <tag>_round<N+1>, so every round's manifests and model are kept
# <infer> is exp/detector/<family>/<version>[_<tag>]/infer/<checkpoint>; <corpus> is the folder
# stage 0 read (--datadir, or data/detector/synth). Options of stages 7-8 (egs/detector/run.sh
# sets them from --review_max, --review_order, --review_min_score, --reviewer):
review_max=${DETECTOR_REVIEW_MAX:-40}            # segments cut per round (0: every detection)
review_order=${DETECTOR_REVIEW_ORDER:-spread}    # top: highest scores; spread: borderline too
review_min_score=${DETECTOR_REVIEW_MIN_SCORE:-}  # drop detections scoring below (empty: keep)
reviewer=${DETECTOR_REVIEWER:-}                  # name saved with decisions (empty: $USER)
recipe_last_stage=10

# the round of an experiment tag: round<N> or <name>_round<N>; 0 otherwise
detector_round() {
  if [[ "$1" =~ (^|_)round([0-9]+)$ ]]; then echo "${BASH_REMATCH[2]}"; else echo 0; fi
}

# "<name>_round<N+1>" from "<name>_round<N>" (or "<name>"), "round<N+1>" from "" or "round<N>"
detector_next() {
  local base=$1 n
  n=$(detector_round "$1")
  if (( n > 0 )); then base=${base%round"${n}"}; base=${base%_}; fi
  echo "${base:+${base}_}round$((n + 1))"
}

run_recipe_stages() {
  local review=${inf}/review dets=${inf}/events_test/detections.csv corpus_dir
  if (( stage <= 7 )) && [[ ! -f "${inf}/.done4" ]]; then
    echo "stages 6-7 cannot start: no stage-4 detections in ${inf}" >&2
    echo "run first: $(fix_cmd 4)" >&2
    exit 2
  fi
  # the folder stage 0 read: where reviewed clips are merged and what the next round trains on
  corpus_dir=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["source"])' \
    "${manifests}/corpus.json") || exit 2

  if (( stage <= 6 && stop_stage >= 6 )); then
    log "stage 6: long-file reports -> ${inf}/report"
    python "${recipe_dir}/local/report.py" --detections "${dets}" --manifests "${manifests}" \
      --outdir "${inf}/report" > "${inf}/report.log"
    grep -E '^[^ ].*(precision|reports of)' "${inf}/report.log" || true
  fi

  if (( stage <= 7 && stop_stage >= 7 )); then
    log "stage 7: review segments -> ${review}"
    if [[ -f "${review}/review.csv" && "${overwrite}" == false ]]; then
      log "${review}/review.csv exists (decisions are kept); skipping (--overwrite true cuts anew)"
    else
      rm -rf "${review}"
      cut_args=(--order "${review_order}" --merge_overlaps)
      (( review_max > 0 )) && cut_args+=(--max_segments "${review_max}")
      [[ -n "${review_min_score}" ]] && cut_args+=(--min_score "${review_min_score}")
      python -m sed.bin.review cut "${dets}" --sources "${manifests}/recordings.csv" \
        --outdir "${review}" "${cut_args[@]}"
    fi
  fi

  # nothing detected, nothing to review: the next round would be this one again
  if (( stop_stage >= 8 )) && [[ -f "${review}/review.csv" ]] \
    && [[ $(wc -l < "${review}/review.csv") -le 1 ]]; then
    log "no detections to review: stage 4 found none above its thresholds (${inf}/thresholds.json);" \
      "stages 8-10 stop here"
    return 0
  fi

  if (( stage <= 8 && stop_stage >= 8 )); then
    log "stage 8: review ${review} (keys: y yes, n no, u unsure, s skip, r replay, b undo, q quit)"
    [[ -f "${review}/review.csv" ]] || { echo "stage 8 cannot start: run stage 7 first" >&2; exit 2; }
    python -m sed.bin.review review "${review}" ${reviewer:+--reviewer "${reviewer}"}
  fi

  if (( stage <= 9 && stop_stage >= 9 )); then
    log "stage 9: merge the decisions into ${corpus_dir}"
    if [[ ! -s "${review}/decisions.csv" ]]; then
      echo "stage 9 cannot start: no decisions in ${review} (review them: --stage 8 --stop_stage 8)" >&2
      exit 2
    fi
    python -m sed.bin.review merge "${review}" --root "${corpus_dir}"
  fi

  if (( stage <= 10 && stop_stage >= 10 )); then
    local next_tag next_data args
    next_tag=$(detector_next "${tag}")
    next_data=$(detector_next "${data_tag}")
    args=(./run.sh --recipe "${recipe}" --stage 0 --stop_stage 5 --conf "${conf}"
      --datadir "${corpus_dir}" --data_tag "${next_data}" --tag "${next_tag}" --nj "${nj}"
      --fold "${fold}" --checkpoint "${checkpoint}" --strict "${strict}")
    [[ -n "${conf_override}" ]] && args+=(--conf_override "${conf_override}")
    [[ -n "${workdir}" ]] && args+=(--workdir "${workdir%/}")
    [[ -n "${ngpu}" ]] && args+=(--ngpu "${ngpu}")
    log "stage 10: retrain on the grown corpus: $(quoted "${args[@]}")"
    # reviewed clips cut from the long files are now training data: the next round's test score
    # on those files is optimistic (keep some long files out of the review to compare rounds)
    "${args[@]}"
    log "next round: $(quoted ./egs/detector/run.sh --stage 6 --stop_stage 10 --tag "${next_tag}" \
      --data_tag "${next_data}" ${workdir:+--workdir "${workdir%/}"})"
  fi
}
