#!/usr/bin/env bash
# Slurm job backend: submits the command as an sbatch job (a job array for JOB=a:b) and waits for it.
#
# Usage: sed/launch/slurm.sh [--gpu N] [--num_threads N] [--mem M] [--time T] [--max_jobs_run N]
#                            [--config conf/slurm.conf] [JOB=1:N] <log> <command ...>
#
# Options map to sbatch flags through conf/slurm.conf (or $SED_SLURM_CONF); $SED_SLURM_POLL sets
# the seconds between squeue polls [5]. Details and the exit-status contract: sed/launch/slurm.py
# and docs/slurm.md. Only the standard library is used, so any python3 runs it.
exec python3 "$(dirname "${BASH_SOURCE[0]}")/slurm.py" "$@"
