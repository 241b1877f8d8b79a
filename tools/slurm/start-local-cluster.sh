#!/usr/bin/env bash
# Starts a one-node Slurm cluster on this host, for tests of the slurm job backend (tests/test_slurm.py).
#
#   sudo tools/slurm/start-local-cluster.sh     # installs slurm-wlm + munge (Debian), starts the daemons
#
# Idempotent: when a cluster written by this script already answers and its node is usable, it does
# nothing. It refuses to touch an /etc/slurm/slurm.conf that it did not write (a real cluster node).
# The node gets this machine's CPUs (nproc) and memory (free); only cores are consumable, so jobs that
# ask for no memory run side by side. There is no accounting database: `sacct` does not work here;
# finished jobs are listed in the job completion log ${jobcomp} (one line per job or array task)
# and, for MinJobAge seconds, in `scontrol show job`.
# Exit status: 0 when the cluster runs a job, 1 otherwise (the reason is printed).
set -euo pipefail

conf_dir=/etc/slurm
conf=${conf_dir}/slurm.conf
marker="# written by sed tools/slurm/start-local-cluster.sh"
jobcomp=/var/log/slurm/jobcomp.log
host=$(hostname -s)

log() { echo "$(date '+%H:%M:%S') start-local-cluster: $*"; }
die() { echo "start-local-cluster: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root (it installs packages and starts munged, slurmctld and slurmd)"

cpus=$(nproc)
mem_mb=$(free -m | awk '/^Mem:/ {print $2}')
mem_mb=$((mem_mb * 95 / 100))  # slurmd drains a node that has less memory than configured
new_conf=$(cat <<CONF
${marker}
# One-node test cluster: slurmctld and slurmd on ${host}, jobs run as their submitting user.
ClusterName=sedlocal
SlurmctldHost=${host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# a requeued job (preemption test) may start again after this many seconds (default 120)
AuthInfo=cred_expire=10
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# no cgroups (containers often lack them): processes are tracked through /proc
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
# only cores are consumable: jobs that ask for no memory do not each take the whole node
SelectTypeParameters=CR_Core
ReturnToService=2
# seconds a finished job stays visible in squeue / scontrol show job
MinJobAge=600
KillWait=10
# no accounting database: sacct does not work; the completion log lists every job and array task
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=${jobcomp}
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
)
node_state() { sinfo -h -n "${host}" -o '%T' 2>/dev/null | head -n 1; }

cluster_up() {  # our cluster, with today's config, answers and its node takes jobs
  [[ "$(cat "${conf}" 2>/dev/null)" == "${new_conf}" ]] || return 1
  scontrol ping 2>/dev/null | grep -q "is UP" || return 1
  [[ "$(node_state)" =~ ^(idle|mixed|allocated|completing)$ ]]
}

if cluster_up; then
  log "cluster is up (node ${host}: $(node_state)); nothing to do"
  exit 0
fi

# ------------------------------------------------------------------------------------- packages
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  log "installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null || die "apt-get update failed"
  # policy-rc.d or not, the packages' own services are not relied on: the daemons start below
  apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null \
    || die "apt-get install slurm-wlm munge failed"
fi

# ------------------------------------------------------------------------------------- munge
if [[ ! -s /etc/munge/munge.key ]]; then
  log "creating the munge key"
  install -d -o munge -g munge -m 0700 /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "starting munged"
  # munged refuses to run as root; it runs as the munge user the package created
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.2; done
  munge -n | unmunge >/dev/null || die "munged does not answer (see /var/log/munge/munged.log)"
fi

# ------------------------------------------------------------------------------------- slurm.conf
if [[ -f "${conf}" ]] && ! grep -qF "${marker}" "${conf}"; then
  die "${conf} exists and was not written by this script: not touching a real cluster's config"
fi
install -d "${conf_dir}" /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
if [[ "$(cat "${conf}" 2>/dev/null)" != "${new_conf}" ]]; then
  log "writing ${conf} (${cpus} CPUs, ${mem_mb} MB)"
  echo "${new_conf}" > "${conf}"
  # daemons started with an older config must reread it
  for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
    if [[ -f "${pidfile}" ]] && kill "$(cat "${pidfile}")" 2>/dev/null; then sleep 1; fi
  done
fi

# ------------------------------------------------------------------------------------- daemons
running() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
if ! running /run/slurmctld.pid; then
  log "starting slurmctld"
  slurmctld || die "slurmctld did not start (see /var/log/slurm/slurmctld.log)"
fi
for _ in $(seq 60); do scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.5; done
scontrol ping | grep -q 'is UP' || die "slurmctld does not answer (see /var/log/slurm/slurmctld.log)"
if ! running /run/slurmd.pid; then
  log "starting slurmd"
  slurmd || die "slurmd did not start (see /var/log/slurm/slurmd.log)"
fi
for _ in $(seq 60); do
  state=$(node_state)
  [[ "${state}" =~ ^(idle|mixed|allocated)$ ]] && break
  # a node left down or drained by an earlier run takes jobs again once slurmd answers
  if [[ "${state}" =~ ^(down|drain) ]]; then
    scontrol update NodeName="${host}" State=RESUME 2>/dev/null || true
  fi
  sleep 0.5
done
state=$(node_state)
[[ "${state}" =~ ^(idle|mixed|allocated)$ ]] \
  || die "node ${host} is '${state}' (see /var/log/slurm/slurmd.log, sinfo -R)"
log "cluster is up: partition debug, node ${host} (${cpus} CPUs) ${state}; completion log ${jobcomp}"
