"""Slurm job backend: one sbatch job (a job array for ``JOB=...``), waited for like a local command.

Usage (the interface of every backend; see ``cmd.sh``)::

    sed/launch/slurm.sh [--gpu N] [--num_threads N] [--mem M] [--time T] [--max_jobs_run N]
                        [--config conf/slurm.conf] [JOB=1:N] <log> <command ...>

The job script is written next to the log (``<log>.sbatch`` without ``.log``; for a ``JOB`` in a
folder name, into the nearest folder without it) and submitted with the flags that
``conf/slurm.conf`` maps the options to. ``JOB=a:b`` (or a list ``JOB=0,2,5:7``) becomes one job
array; the literal ``JOB`` in the log path and the command is each task's index (the placeholder
is the name before ``=``: ``JOB1=1:4`` substitutes ``JOB1``, for paths that contain ``JOB``).
Every task's log has the format of the local backend: the command line, a start line (with the
Slurm job id), the output and ``# Ended (code N) at ..., elapsed time S seconds``.

This command waits until every task has ended, prints each task's exit status and log, and exits
with 0 when all succeeded, else with the status of the first failed task (1 when a task ended
without an end line: killed by Slurm). Ctrl-C (or TERM) cancels the job and exits 130 (143).

Preemption: with ``--signal=B:TERM@S`` in the config, the job script gets TERM S seconds before the
time limit and forwards it to the command; a command that then exits 75 (EX_TEMPFAIL: state saved,
resume by running it again) is requeued when the config has ``--requeue``, and the requeued task
runs the same command again, appending to the same log.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

# status of a command that saved its state on TERM and can be resumed by running it again
EXIT_RESUMABLE = 75
DEFAULT_CONFIG = "conf/slurm.conf"
GENERIC_OPTIONS = ("gpu", "num_threads", "mem", "time")
# squeue states in which a job (or array task) may still run or run again
ACTIVE_STATES = {
    "PENDING",
    "CONFIGURING",
    "RUNNING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
    "STOPPED",
}
END_LINE = re.compile(r"^# Ended \(code (-?\d+)\)")


class LaunchError(Exception):
    """A usage or configuration error (exit status 2)."""


# ------------------------------------------------------------------------------------ slurm.conf
@dataclass
class SlurmConf:
    """``conf/slurm.conf``: the submit command and how generic options become sbatch flags.

    Format (Kaldi/ESPnet's ``slurm.conf``), one directive a line, ``#`` starts a comment::

        command sbatch --export=ALL          # submit program and flags of every job
        default gpu=0                        # value of an option the caller did not give
        option gpu=0                         # flags for exactly this value (here: none)
        option gpu=* --gres=gpu:$0           # flags for any other value; $0 is the value
    """

    command: list[str] = field(default_factory=lambda: ["sbatch"])
    defaults: dict[str, str] = field(default_factory=dict)
    # option name -> value (or "*") -> flags, in the order of the file
    options: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, source: str = "slurm.conf") -> SlurmConf:
        conf = cls()
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            where = f"{source}:{lineno}"
            try:
                directive, *rest = shlex.split(line)
            except ValueError as e:
                raise LaunchError(f"{where}: {e}") from None
            if directive == "command":
                if not rest:
                    raise LaunchError(f"{where}: 'command' needs the submit program, e.g. sbatch")
                conf.command = rest
            elif directive in ("default", "option"):
                if not rest or "=" not in rest[0]:
                    raise LaunchError(f"{where}: expected '{directive} <name>=<value> ...'")
                name, value = rest[0].split("=", 1)
                if directive == "default":
                    if len(rest) > 1:
                        raise LaunchError(f"{where}: 'default' takes only <name>=<value>")
                    conf.defaults[name] = value
                else:
                    conf.options.setdefault(name, {})[value] = rest[1:]
            else:
                raise LaunchError(
                    f"{where}: unknown directive '{directive}' (valid: command, default, option)"
                )
        return conf

    @classmethod
    def load(cls, path: str | os.PathLike) -> SlurmConf:
        try:
            return cls.parse(Path(path).read_text(), str(path))
        except FileNotFoundError:
            raise LaunchError(f"slurm config '{path}' not found") from None

    def flags(self, given: dict[str, str]) -> list[str]:
        """sbatch flags for the generic options ``given`` (unset ones take their defaults)."""
        values = self.defaults | {k: v for k, v in given.items() if v is not None}
        for name in values:
            if name not in self.options:
                raise LaunchError(
                    f"the slurm config has no 'option {name}=...' line for --{name} "
                    f"(configured: {', '.join(self.options) or 'none'})"
                )
        out = list(self.command[1:])
        for name, choices in self.options.items():
            if name not in values:
                continue
            value = values[name]
            if value in choices:
                out += choices[value]
            elif "*" in choices:
                out += [arg.replace("$0", value) for arg in choices["*"]]
            else:
                raise LaunchError(
                    f"--{name} {value}: the slurm config allows only {', '.join(choices)}"
                )
        return out


# ------------------------------------------------------------------------------------ job ids
def parse_job_ids(spec: str) -> list[int]:
    """Task indices of ``1:4`` (inclusive), ``0,2,5:7`` or ``3``: sorted, without duplicates."""
    ids: set[int] = set()
    for part in spec.split(","):
        m = re.fullmatch(r"(\d+)(?::(\d+))?", part.strip())
        if not m:
            raise LaunchError(f"bad JOB range '{spec}' (expected e.g. JOB=1:4 or JOB=0,2,5:7)")
        first, last = int(m[1]), int(m[2] if m[2] is not None else m[1])
        if last < first:
            raise LaunchError(f"bad JOB range '{spec}': {last} < {first}")
        ids.update(range(first, last + 1))
    return sorted(ids)


def array_spec(ids: list[int], max_jobs_run: int | None = None) -> str:
    """sbatch ``--array`` value: runs of consecutive ids as ranges, ``%N`` to throttle."""
    parts: list[str] = []
    start = prev = ids[0]
    for i in [*ids[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(parts) + (f"%{max_jobs_run}" if max_jobs_run else "")


def job_script_path(log: Path, token: str = "JOB") -> Path:
    """Where the job script goes: next to the log; for ``dir/foldJOB/train.log``, in ``dir``."""
    parts = log.parts
    stem = log.name[: -len(".log")] if log.name.endswith(".log") else log.name
    dirs = parts[:-1]
    first_job = next((i for i, p in enumerate(dirs) if token in p), len(dirs))
    name = ".".join([*dirs[first_job:], stem]) + ".sbatch"
    return Path(*dirs[:first_job], name) if first_job else Path(name)


def job_name(log: Path) -> str:
    """A name that tells jobs apart in squeue: the log's last folders and stem."""
    stem = log.name[: -len(".log")] if log.name.endswith(".log") else log.name
    return "/".join([*log.parts[-3:-1], stem])


def bash_word(arg: str, var: str | None, token: str = "JOB") -> str:
    """``arg`` quoted for bash, each literal ``token`` replaced by ``"${var}"`` when ``var``."""
    if var is None or token not in arg:
        return shlex.quote(arg)
    return f'"${{{var}}}"'.join(shlex.quote(piece) if piece else "" for piece in arg.split(token))


def sbatch_lines(flags: list[str]) -> list[str]:
    """One ``#SBATCH`` line per flag with its values (``-p gpu``, ``--gres=gpu:1``)."""
    lines: list[list[str]] = []
    for arg in flags:
        if arg.startswith("-") or not lines:
            lines.append([arg])
        else:
            lines[-1].append(arg)
    return ["#SBATCH " + " ".join(shlex.quote(a) for a in line) for line in lines]


# ------------------------------------------------------------------------------------ job script
@dataclass
class Job:
    """One submission: a command, its log (with ``JOB`` when ``ids``), options and flags."""

    command: list[str]
    log: Path
    ids: list[int] | None = None
    flags: list[str] = field(default_factory=list)
    num_threads: str | None = None
    max_jobs_run: int | None = None
    workdir: Path = field(default_factory=Path.cwd)
    # the placeholder of the task index: the name before '=' of the range (JOB=1:4), so a caller
    # whose paths contain "JOB" can pick another one and keep those paths intact
    token: str = "JOB"

    def task_log(self, task: int | None) -> Path:
        return Path(str(self.log).replace(self.token, str(task))) if task is not None else self.log

    @property
    def tasks(self) -> list[int | None]:
        return list(self.ids) if self.ids is not None else [None]

    @property
    def requeue(self) -> bool:
        return "--requeue" in self.flags

    def script(self) -> str:
        """The job script: writes the log header, runs the command, forwards TERM, requeues."""
        var = "JOB" if self.ids is not None else None
        log = self.log if self.log.is_absolute() else self.workdir / self.log
        # Slurm writes the script's output to the log; %a is the array index, % must be doubled
        output = str(log).replace("%", "%%")
        if var:
            output = output.replace(self.token, "%a")
        header = [
            f"--job-name={job_name(self.log)}",
            f"--output={output}",
            # a requeued task appends to the log of its first run (the submitter empties it)
            "--open-mode=append",
        ]
        if self.ids is not None:
            header.append(f"--array={array_spec(self.ids, self.max_jobs_run)}")
        cmd = " ".join(bash_word(a, var, self.token) for a in self.command)
        lines = [
            "#!/usr/bin/env bash",
            *sbatch_lines(header + self.flags),
            f"# Written by sed/launch/slurm.py at {datetime.now():%Y-%m-%d %H:%M:%S}; "
            "resubmit with: sbatch <this file>",
            "# One task: the log (--output) gets the command line, a start line, the output and",
            "# an end line with the exit status. TERM (Slurm's --signal=B:TERM before the time",
            "# limit) is forwarded to the command; if it then exits 75 it has saved its state,",
            "# and the task requeues itself (with --requeue) to resume.",
            "set -uo pipefail",
            f"cd {shlex.quote(str(self.workdir))} || exit 1",
        ]
        if var:
            lines.append(f"{var}=${{SLURM_ARRAY_TASK_ID}}")
        # threads: --num_threads, else the CPUs Slurm gave the task (without task affinity a
        # process would otherwise start a thread per core of the node, shared with other jobs)
        threads = shlex.quote(self.num_threads) if self.num_threads else "${SLURM_CPUS_PER_TASK:-1}"
        lines.append(f"export OMP_NUM_THREADS={threads}")
        lines += [
            f"requeue={int(self.requeue)}",
            f"cmd=({cmd})",
            "stamp() { date '+%Y-%m-%d %H:%M:%S'; }",
            'echo "# ${cmd[*]}"',
            'echo "# Started at $(stamp) on $(hostname) (Slurm job ${SLURM_JOB_ID}'
            "${SLURM_ARRAY_JOB_ID:+, array task ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}}"
            '${SLURM_RESTART_COUNT:+, restart ${SLURM_RESTART_COUNT}})"',
            "start=$(date +%s)",
            "# this task alone (the last task of an array has the array's id, which names all)",
            "task_id=${SLURM_ARRAY_JOB_ID:+${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}}",
            "task_id=${task_id:-${SLURM_JOB_ID}}",
            "signalled=0",
            'pid=""',
            "# TERM to the command itself only: its data-loader workers must not die first",
            "# shellcheck disable=SC2317  # called by the traps",
            "forward() {",
            '  signalled=1; echo "# $(stamp): got $1, sending TERM to the command"',
            '  [[ -n "${pid}" ]] && kill -TERM "${pid}" 2>/dev/null',
            "}",
            "trap 'forward TERM' TERM",
            "trap 'forward INT' INT",
            '"${cmd[@]}" < /dev/null &',
            "pid=$!",
            "# wait returns early when a trapped signal arrives: wait again until the command ends",
            'while kill -0 "${pid}" 2>/dev/null; do wait "${pid}"; done',
            'wait "${pid}"; rc=$?',
            "elapsed=$(($(date +%s) - start))",
            f"if [[ ${{rc}} == {EXIT_RESUMABLE} && ${{signalled}} == 1 && ${{requeue}} == 1 ]] \\",
            "    && scontrol show job -o \"${task_id}\" | grep -q 'JobState=RUNNING'; then",
            "  # saved and not cancelled (scancel leaves the state CANCELLED): run it again later",
            f'  echo "# Preempted (code {EXIT_RESUMABLE}) at $(stamp), elapsed time '
            '${elapsed} seconds; requeueing Slurm job ${task_id}"',
            '  scontrol requeue "${task_id}" && exit "${rc}"',
            '  echo "# requeue failed: this task ends here; run the command again to resume"',
            "fi",
            'echo "# Ended (code ${rc}) at $(stamp), elapsed time ${elapsed} seconds"',
            'exit "${rc}"',
        ]
        return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ running
def read_end_status(log: Path) -> int | None:
    """Exit status from the log's last ``# Ended`` line, or None while the task may still run.

    A requeued task appends a new start line after its ``# Preempted`` line, so only a final
    ``# Ended`` line after the last start counts.
    """
    try:
        lines = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        if line.startswith(("# Started at ", "# Preempted ")):
            return None
        m = END_LINE.match(line)
        if m:
            return int(m[1])
    return None


def active_tasks(job_id: str) -> dict[str, str] | None:
    """squeue's view of a job: task id -> state (and reason) of the tasks that may still run.

    Empty when the job has left the queue; None when squeue failed for another reason.
    """
    proc = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%i %T %r"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        # a finished job is forgotten after MinJobAge: squeue then calls its id invalid
        return {} if "Invalid job id" in proc.stderr else None
    active: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        task, state, reason = [*line.split(maxsplit=2), "", ""][:3]
        if state in ACTIVE_STATES:
            active[task] = f"{state} ({reason})" if reason not in ("", "None") else state
    return active


def _write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file renamed onto ``path`` (sed.fileio's rule; this module keeps
    to the standard library): an interrupted write never leaves half a job script."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def submit(job: Job, submit_cmd: str) -> tuple[str, Path]:
    """Write the job script, empty the task logs, ``sbatch`` it: the job id and the script."""
    script = job.workdir / job_script_path(job.log, job.token)
    script.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(script, job.script())
    for task in job.tasks:
        log = job.workdir / job.task_log(task)
        log.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(log, "")  # the job appends (requeues keep their first run's lines)
    proc = subprocess.run(
        [submit_cmd, "--parsable", str(script)], capture_output=True, text=True, cwd=job.workdir
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{submit_cmd} {script} failed ({proc.returncode}): {proc.stderr}")
    # --parsable prints "<id>" or "<id>;<cluster>"
    return proc.stdout.strip().split(";")[0], script


def wait(job: Job, job_id: str, poll: float, grace: float = 30.0) -> dict[int | None, int | None]:
    """Poll until no task of ``job_id`` can run again: each task's exit status (None: no end line).

    A task counts as ended by its log's end line; a job that left the queue while a log has none
    (killed, or the file system is slow to show the last line) is given ``grace`` seconds.
    """
    states: dict[str, str] = {}
    failures = 0
    gone_since: float | None = None
    while True:
        active = active_tasks(job_id)
        if active is None:
            failures += 1
            if failures * poll > 600:
                raise RuntimeError(f"squeue has failed for 10 minutes; job {job_id} left running")
        else:
            failures = 0
            for task, state in active.items():
                if states.get(task) != state:
                    print(f"slurm: job {task} {state}", flush=True)
            states = active
        status = {t: read_end_status(job.workdir / job.task_log(t)) for t in job.tasks}
        if active == {}:
            if all(s is not None for s in status.values()):
                return status
            gone_since = gone_since or time.monotonic()
            if time.monotonic() - gone_since > grace:
                return status
        time.sleep(poll)


def job_state(job_id: str) -> str:
    """``JobState`` and ``ExitCode`` of a finished job from scontrol (while Slurm remembers it)."""
    proc = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True)
    found = re.findall(r"\b(JobState=\S+|ExitCode=\S+|Reason=\S+)", proc.stdout)
    return " ".join(found) or "unknown to scontrol"


def task_job_id(job_id: str, task: int | None) -> str:
    return job_id if task is None else f"{job_id}_{task}"


def run(job: Job, submit_cmd: str, poll: float) -> int:
    """Submit, wait, report every task; the exit status of the whole launch."""
    job_id, script = submit(job, submit_cmd)
    n = len(job.tasks)
    what = (
        f"array job {job_id} ({n} task{'s' * (n > 1)}: {array_spec(job.ids)})"
        if job.ids
        else f"job {job_id}"
    )
    print(f"slurm: submitted {what}; script {script}, log {job.log}", flush=True)

    def cancel(signum: int, _frame: object) -> None:
        print(f"\nslurm: {signal.Signals(signum).name}: cancelling job {job_id}", file=sys.stderr)
        subprocess.run(["scancel", job_id], check=False)
        sys.exit(128 + signum)

    old = {s: signal.signal(s, cancel) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        status = wait(job, job_id, poll)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    rc = 0
    for task, code in status.items():
        log = job.task_log(task)
        tid = task_job_id(job_id, task)
        if code == 0:
            print(f"slurm: job {tid} ended with code 0: {log}")
            continue
        if code is None:
            print(
                f"slurm: job {tid} ended without an end line in its log ({job_state(tid)}); "
                f"killed? see {log}",
                file=sys.stderr,
            )
        elif code == EXIT_RESUMABLE:
            print(
                f"slurm: job {tid} was interrupted and saved its state (code {code}); run the "
                f"same command again to resume: see {log}",
                file=sys.stderr,
            )
        else:
            print(f"slurm: job {tid} FAILED with code {code}: see {log}", file=sys.stderr)
        tail = (job.workdir / log).read_text(errors="replace").splitlines()[-10:]
        print("\n".join(f"  | {line}" for line in tail), file=sys.stderr)
        rc = rc or (code if code is not None else 1)
    if rc:
        print(f"slurm: {sum(c != 0 for c in status.values())} of {n} tasks failed", file=sys.stderr)
    return rc


USAGE = (
    "usage: slurm.sh [--gpu N] [--num_threads N] [--mem M] [--time T] [--max_jobs_run N] "
    "[--config FILE] [JOB=1:N] <log> <command ...>"
)


def parse_args(argv: list[str]) -> tuple[Job, str]:
    """The job (options, JOB range, log, command, sbatch flags) and the submit program."""
    given: dict[str, str] = {}
    config = os.environ.get("SED_SLURM_CONF", DEFAULT_CONFIG)
    max_jobs_run = None
    args = list(argv)
    while args and args[0].startswith("--"):
        opt = args.pop(0)
        name = opt[2:]
        if not args:
            raise LaunchError(f"option {opt} needs a value\n{USAGE}")
        value = args.pop(0)
        if name in GENERIC_OPTIONS:
            given[name] = value
        elif name == "config":
            config = value
        elif name == "max_jobs_run":
            if not value.isdigit() or int(value) < 1:
                raise LaunchError(f"--max_jobs_run must be a positive integer, got '{value}'")
            max_jobs_run = int(value)
        else:
            raise LaunchError(f"unknown option {opt}\n{USAGE}")
    ids = None
    token = "JOB"
    m = re.match(r"([A-Z][A-Z0-9_]*)=", args[0]) if args else None
    if m:
        token = m[1]
        ids = parse_job_ids(args.pop(0)[m.end() :])
    if len(args) < 2:
        raise LaunchError(USAGE)
    log, command = Path(args[0]), args[1:]
    if ids is not None and token not in str(log):
        raise LaunchError(f"with a {token} range the log name must contain {token} (got {log})")
    conf = SlurmConf.load(config)
    flags = conf.flags(given)
    signals = [f for f in flags if f.startswith("--signal")]
    if signals and not any("B:" in f for f in signals):
        print(
            f"slurm: warning: {signals[0]} does not signal the batch shell (B:), so the job "
            "script cannot forward TERM to the command",
            file=sys.stderr,
        )
    job = Job(
        command=command,
        log=log,
        ids=ids,
        flags=flags,
        num_threads=given.get("num_threads"),
        max_jobs_run=max_jobs_run,
        token=token,
    )
    return job, conf.command[0]


def main(argv: list[str] | None = None) -> int:
    try:
        job, submit_cmd = parse_args(sys.argv[1:] if argv is None else argv)
    except LaunchError as e:
        print(f"slurm.sh: {e}", file=sys.stderr)
        return 2
    poll = float(os.environ.get("SED_SLURM_POLL", "5"))
    try:
        return run(job, submit_cmd, poll)
    except (RuntimeError, FileNotFoundError) as e:
        print(f"slurm.sh: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
