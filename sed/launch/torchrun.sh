#!/usr/bin/env bash
# Data-parallel launcher: one process per GPU with torchrun (DistributedDataParallel in sed.train).
#
# Usage: sed/launch/torchrun.sh <processes per node> -m <module> [args ...]
#
# On one machine: torchrun --standalone. Inside a Slurm allocation of several nodes: srun starts one
# torchrun per node, which meet at a c10d rendezvous on the allocation's first node (from Slurm's
# SLURM_JOB_NODELIST / SLURM_NNODES / SLURM_JOB_ID), so every node gets the same command.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 <processes per node> -m <module> [args ...]" >&2
  exit 2
fi
nproc=$1; shift
port=${SED_RDZV_PORT:-29500}
if [[ -n "${SLURM_JOB_ID:-}" && "${SLURM_NNODES:-1}" -gt 1 ]]; then
  head=$(scontrol show hostnames "${SLURM_JOB_NODELIST}" | head -n 1)
  exec srun --nodes="${SLURM_NNODES}" --ntasks-per-node=1 \
    python -m torch.distributed.run --nnodes "${SLURM_NNODES}" --nproc_per_node "${nproc}" \
      --rdzv_id "${SLURM_JOB_ID}" --rdzv_backend c10d --rdzv_endpoint "${head}:${port}" "$@"
fi
exec python -m torch.distributed.run --standalone --nproc_per_node "${nproc}" "$@"
