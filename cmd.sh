# shellcheck shell=bash disable=SC2034,SC2317  # sourced by run.sh, which uses these variables
# Job backends: every stage runs its jobs through these commands (sourced by run.sh).
#   ${train_cmd} [--gpu N] [--num_threads N] [--mem M] [--time T] [JOB=1:N] <log> <command ...>
# With JOB=a:b (or a list JOB=0,2,5:7) the literal JOB in the log name and in the command becomes
# each task's index: one task per index. Every task's log holds the command line, the start time,
# the output and an end line "# Ended (code N) ..."; the exit status is 0 when all tasks
# succeeded, else the first failed task's (75: interrupted with its state saved, run it again to
# resume).
#
# Select the backend with SED_CMD_BACKEND (local | slurm), e.g. SED_CMD_BACKEND=slurm ./run.sh
#   local  runs on this machine; tasks of a JOB range run --max_jobs_run at a time (default 1)
#   slurm  submits one sbatch job per call, a job array for a JOB range, and waits for it; the
#          options map to sbatch flags through conf/slurm.conf (or SED_SLURM_CONF); see
#          docs/slurm.md
cmd_backend=${SED_CMD_BACKEND:-local}

case "${cmd_backend}" in
  local)
    # one fold after the other: one training already uses every core of a small machine; with
    # several GPUs, raise it to the GPU count (and give each fold its own CUDA_VISIBLE_DEVICES)
    train_cmd="sed/launch/local.sh --max_jobs_run 1"
    infer_cmd="sed/launch/local.sh"
    prep_cmd="sed/launch/local.sh"
    ;;
  slurm)
    # folds of a JOB range run in parallel, as far as the cluster allows (add --max_jobs_run N to
    # throttle the array: sbatch --array=...%N)
    train_cmd="sed/launch/slurm.sh"
    infer_cmd="sed/launch/slurm.sh"
    prep_cmd="sed/launch/slurm.sh"
    ;;
  *)
    echo "cmd.sh: unknown backend '${cmd_backend}' (valid: local, slurm)" >&2
    return 1 2>/dev/null || exit 1
    ;;
esac
