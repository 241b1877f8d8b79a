#!/usr/bin/env bash
# Local job backend: run a command here, or one task per index of a JOB range, and write the logs.
#
# Usage: sed/launch/local.sh [--gpu N] [--num_threads N] [--mem M] [--time T] [--max_jobs_run N]
#                            [JOB=a:b | JOB=a,b,c:d] <log> <command ...>
#
# With a JOB range the literal JOB in the log name and in the command is replaced by each task's
# index (JOB=1:4 is 1 2 3 4; JOB=0,2,5:6 is 0 2 5 6). As in Kaldi, the placeholder is the name
# before '=': a caller whose paths contain "JOB" picks another one (JOB1=1:4 ... foldJOB1), so
# only the placeholder is substituted and such paths are passed on intact. Tasks run --max_jobs_run at a time
# [default 1: one after the other, because a training task already uses every core of a small
# machine; raise it for light tasks or a machine with several GPUs].
#
# Each log holds the command line, the start time, everything the command printed, and the end
# line "# Ended (code N) at <time>, elapsed time S seconds", so a failed task can be diagnosed
# from its log alone (and run.sh reads a task's result from that last line). While one task runs
# at a time its output is also shown on the console; otherwise start and end lines are.
#
# Ctrl-C or TERM is passed on to the running commands as TERM, and their end lines are still
# written: a trainer that saves its state on TERM and exits 75 can be resumed by running it again.
# Exit status: 0 when every task succeeded; else the status of the first failed task (lowest
# index), with each failed task's log named on stderr; 2 on a usage error.
set -uo pipefail

usage="usage: $0 [--gpu N] [--num_threads N] [--mem M] [--time T] [--max_jobs_run N] [JOB=a:b] <log> <command ...>"
job_var=JOB
num_threads=""
max_jobs_run=1
while [[ $# -gt 0 && "$1" == --* ]]; do
  if [[ $# -lt 2 ]]; then echo "$0: option $1 needs a value" >&2; exit 2; fi
  case "$1" in
    --num_threads) num_threads=$2 ;;
    --max_jobs_run) max_jobs_run=$2 ;;
    --gpu|--mem|--time) ;;  # meaningful for cluster backends only
    *) echo "$0: unknown option $1 (valid: --gpu --num_threads --mem --time --max_jobs_run)" >&2; exit 2 ;;
  esac
  shift 2
done
if ! [[ "${max_jobs_run}" =~ ^[1-9][0-9]*$ ]]; then
  echo "$0: --max_jobs_run must be a positive integer, got '${max_jobs_run}'" >&2; exit 2
fi

ranged=false
tasks=(0)  # one task; its index is not used without a JOB range
if [[ $# -gt 0 && "$1" =~ ^([A-Z][A-Z0-9_]*)= ]]; then
  ranged=true
  job_var=${BASH_REMATCH[1]}
  tasks=()
  IFS=, read -ra parts <<< "${1#*=}"
  for part in "${parts[@]}"; do
    if [[ "${part}" =~ ^([0-9]+):([0-9]+)$ ]] && (( BASH_REMATCH[1] <= BASH_REMATCH[2] )); then
      mapfile -t -O "${#tasks[@]}" tasks < <(seq "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}")
    elif [[ "${part}" =~ ^[0-9]+$ ]]; then
      tasks+=("${part}")
    else
      echo "$0: bad JOB range '$1' (expected e.g. JOB=1:4 or JOB=0,2,5:7)" >&2; exit 2
    fi
  done
  mapfile -t tasks < <(printf '%s\n' "${tasks[@]}" | sort -nu)
  shift
fi
if [[ $# -lt 2 ]]; then echo "${usage}" >&2; exit 2; fi
log_spec=$1; shift
if [[ "${ranged}" == true && "${log_spec}" != *"${job_var}"* ]]; then
  echo "$0: with a ${job_var} range the log name must contain ${job_var} (got ${log_spec})" >&2; exit 2
fi
[[ -n "${num_threads}" ]] && export OMP_NUM_THREADS="${num_threads}"

stamp() { date '+%Y-%m-%d %H:%M:%S'; }
# one task at a time shows its output on the console; parallel output would interleave
show=false
(( ${#tasks[@]} == 1 || max_jobs_run == 1 )) && show=true

declare -A pid_task=() task_log=() task_start=() task_rc=() task_tail=()

launch() {  # start task $1 in the background
  local task=$1 log=${log_spec} args=("${cmd[@]}")
  if [[ "${ranged}" == true ]]; then
    log=${log//"${job_var}"/${task}}
    args=("${args[@]//"${job_var}"/${task}}")
  fi
  mkdir -p "$(dirname "${log}")"
  {
    echo "# ${args[*]}"
    echo "# Started at $(stamp) on $(hostname)"
  } > "${log}"
  local header_bytes
  header_bytes=$(stat -c %s "${log}")
  # the command writes to its log itself (no pipe that a Ctrl-C could break while it saves);
  # the console follows the log with tail, which ends by itself shortly after the command
  "${args[@]}" >> "${log}" 2>&1 < /dev/null &
  local pid=$!
  pid_task[${pid}]=${task}
  task_log[${task}]=${log}
  task_start[${task}]=$(date +%s)
  if [[ "${show}" == true ]]; then
    tail -c "+$((header_bytes + 1))" -s 0.5 -f --pid="${pid}" "${log}" &
    task_tail[${task}]=$!
  elif [[ "${ranged}" == true ]]; then
    echo "$(stamp) local.sh: task ${task} started: ${log}"
  fi
}

finish() {  # task $1 ended with status $2: write its end line
  local task=$1 rc=$2 log=${task_log[$1]}
  if [[ -n "${task_tail[${task}]:-}" ]]; then wait "${task_tail[${task}]}"; fi
  task_rc[${task}]=${rc}
  echo "# Ended (code ${rc}) at $(stamp), elapsed time $(( $(date +%s) - task_start[${task}] )) seconds" >> "${log}"
  if [[ "${show}" == false ]]; then echo "$(stamp) local.sh: task ${task} ended (code ${rc}): ${log}"; fi
}

# shellcheck disable=SC2317,SC2329  # called by the traps below
forward() {  # pass an interrupt on to the running commands, which decide how to stop
  echo "$(stamp) local.sh: got $1; sending TERM to the running task(s)" >&2
  local pid
  for pid in "${!pid_task[@]}"; do kill -TERM "${pid}" 2>/dev/null; done
  interrupted=true
}
interrupted=false
trap 'forward INT' INT
trap 'forward TERM' TERM

cmd=("$@")
next=0
pending() { [[ "${interrupted}" == false ]] && (( next < ${#tasks[@]} )); }
while pending || (( ${#pid_task[@]} > 0 )); do
  if pending && (( ${#pid_task[@]} < max_jobs_run )); then
    launch "${tasks[next]}"
    next=$((next + 1))
    continue
  fi
  # interrupted by a trapped signal, wait returns >128 without a pid: then wait again
  done_pid=""
  wait -n -p done_pid "${!pid_task[@]}"
  rc=$?
  [[ -z "${done_pid:-}" ]] && continue
  finish "${pid_task[${done_pid}]}" "${rc}"
  unset "pid_task[${done_pid}]"
done

status=0
failed=0
for task in "${tasks[@]}"; do
  rc=${task_rc[${task}]:-}
  if [[ -z "${rc}" ]]; then
    # never started: an interrupt came first
    echo "$0: task ${task} not run (interrupted)" >&2
    rc=130
  elif [[ "${rc}" == 0 ]]; then
    continue
  else
    what="command"
    [[ "${ranged}" == true ]] && what="task ${task}"
    echo "$0: ${what} failed (code ${rc}): see ${task_log[${task}]}" >&2
  fi
  failed=$((failed + 1))
  (( status == 0 )) && status=${rc}
done
if [[ "${ranged}" == true ]] && (( failed > 0 )); then
  echo "$0: ${failed} of ${#tasks[@]} tasks failed" >&2
fi
exit "${status}"
