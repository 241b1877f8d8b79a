# Job backends: every stage runs its jobs through these commands.
#   ${train_cmd} [--gpu N] [--num_threads N] [--mem M] [--time T] <log> <command ...>
# "local" runs on this machine and writes the log file (command, start, output, end, exit status).
# A Slurm backend comes with the scale-out work; select it here when it exists.
cmd_backend=${SED_CMD_BACKEND:-local}

case "${cmd_backend}" in
  local)
    train_cmd="sed/launch/local.sh"
    infer_cmd="sed/launch/local.sh"
    prep_cmd="sed/launch/local.sh"
    ;;
  *)
    echo "cmd.sh: unknown backend '${cmd_backend}' (valid: local)" >&2
    return 1 2>/dev/null || exit 1
    ;;
esac
