"""Job backends used by cmd.sh: local.sh (this machine) and slurm.sh / slurm.py (sbatch)."""
