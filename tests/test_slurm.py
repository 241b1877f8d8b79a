"""The slurm job backend on a real Slurm cluster: the recipe's folds as one job array, preemption
with requeue and resume, cancelling on Ctrl-C, and run.sh inside a batch job.

Needs a cluster that answers on this machine; `sudo tools/slurm/start-local-cluster.sh` starts a
one-node one (.ci/run does). Without one every test here skips and says why.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pytest

from sed.data.synth import SynthConfig, generate

ROOT = Path(__file__).resolve().parents[1]
SLURM = ROOT / "sed" / "launch" / "slurm.sh"
STARTED = re.compile(
    r"^# Started at (\S+ \S+) on \S+ \(Slurm job (\d+)(?:, array task (\d+)_(\d+))?"
)
ENDED = re.compile(r"^# Ended \(code (-?\d+)\) at (\S+ \S+),")


def cluster_problem() -> str | None:
    """Why no Slurm job can run here, or None when a cluster answers and has a usable node."""
    if shutil.which("sbatch") is None:
        return "no sbatch on PATH (start a test cluster: sudo tools/slurm/start-local-cluster.sh)"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    if "is UP" not in ping.stdout:
        return f"slurmctld does not answer: {(ping.stdout + ping.stderr).strip()}"
    nodes = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout
    if not re.search(r"^(idle|mixed|allocated|completing)", nodes, re.M):
        return f"no Slurm node takes jobs (states: {' '.join(nodes.split()) or 'none'})"
    return None


@pytest.fixture(scope="module")
def cluster() -> None:
    problem = cluster_problem()
    if problem:
        pytest.skip(f"no Slurm cluster: {problem}")


def slurm_config() -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
    return dict(re.findall(r"^(\w+)\s+= (.*)$", out, re.M))


def slurm_records(job_ids: list[str]) -> dict[str, str]:
    """What Slurm remembers of finished jobs, one text per job id: sacct where accounting works,
    else the job completion log (jobcomp/filetxt), else ``scontrol show job``."""
    sacct = subprocess.run(
        ["sacct", "-n", "-P", "-X", "-o", "JobIDRaw,JobID,State,ExitCode", "-j", ",".join(job_ids)],
        capture_output=True,
        text=True,
    )
    if sacct.returncode == 0 and sacct.stdout.strip():
        rows = [line.split("|") for line in sacct.stdout.splitlines()]
        return {r[0]: f"JobId={r[0]} Array={r[1]} JobState={r[2]} ExitCode={r[3]}" for r in rows}
    conf = slurm_config()
    if conf.get("JobCompType") == "jobcomp/filetxt" and Path(conf["JobCompLoc"]).is_file():
        records = {}
        for line in Path(conf["JobCompLoc"]).read_text().splitlines():
            m = re.match(r"JobId=(\d+) ", line)
            if m and m[1] in job_ids:
                records[m[1]] = line  # the last line of a requeued job is its final run
        return records
    return {
        j: subprocess.run(
            ["scontrol", "show", "job", "-o", j], capture_output=True, text=True
        ).stdout
        for j in job_ids
    }


def stamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S")


def run_sh(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(ROOT / "run.sh"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ | env,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, (
        f"run.sh {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


@pytest.mark.slow
def test_recipe_trains_the_folds_as_one_slurm_job_array(cluster: None, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    generate(
        raw,
        SynthConfig(n_species=4, n_train=8, n_test=4, duration=6.0, sample_rate=16000, seed=5),
        progress=False,
    )
    work = tmp_path / "work"
    common = ["--datadir", str(raw), "--conf", "conf/cnn/tiny.yaml", "--workdir", str(work)]
    common += ["--nj", "1", "--conf_override", "train.max_steps=4 train.eval_every_steps=2"]
    run_sh(*common, "--stop_stage", "1", env={"SED_CMD_BACKEND": "local"})

    slurm_env = {"SED_CMD_BACKEND": "slurm", "SED_SLURM_POLL": "1"}
    # --nj 2: stage 3 runs as a second array job, each task over half of the recordings
    proc = run_sh(*common, "--stage", "2", "--stop_stage", "3", "--nj", "2", env=slurm_env)
    array = re.search(r"submitted array job (\d+) \(2 tasks: 0-1\)", proc.stdout)
    assert array, proc.stdout
    exp = work / "exp" / "rfcx" / "cnn" / "tiny"
    assert "#SBATCH --array=0-1" in (exp / "foldJOB.train.sbatch").read_text()

    task_jobs, spans = {}, {}
    for k in (0, 1):
        lines = (exp / f"fold{k}" / "train.log").read_text().splitlines()
        start = STARTED.match(lines[1])
        assert start and start[3] == array[1] and start[4] == str(k), lines[1]
        end = ENDED.match(lines[-1])
        assert end and end[1] == "0", lines[-1]
        task_jobs[k] = start[2]
        spans[k] = (stamp(start[1]), stamp(end[2]))
        assert (exp / f"fold{k}" / ".done").exists()
        assert (exp / f"fold{k}" / "checkpoints" / "best.pt").exists()
    # the two folds trained at the same time (2 CPUs, one per task)
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1], spans

    infer_array = re.search(r"submitted array job (\d+) \(2 tasks: 1-2\)", proc.stdout)
    assert infer_array and infer_array[1] != array[1], proc.stdout
    infer_jobs = []
    for j in (1, 2):
        infer_log = (exp / "infer" / "best" / f"infer.{j}.log").read_text().splitlines()
        infer_job = STARTED.match(infer_log[1])
        assert infer_job and infer_job[3] == infer_array[1] and infer_job[4] == str(j)
        assert ENDED.match(infer_log[-1])[1] == "0"
        infer_jobs.append(infer_job[2])
    assert (exp / "infer" / "best" / ".done").exists()
    # the merged predictions cover every recording
    oof = (exp / "infer" / "best" / "oof.csv").read_text().splitlines()
    test = (exp / "infer" / "best" / "test.csv").read_text().splitlines()
    assert len(oof) == 1 + 8 and len(test) == 1 + 4

    # Slurm's own record: both array tasks and the inference tasks completed
    records = slurm_records([*task_jobs.values(), *infer_jobs])
    for k, job in task_jobs.items():
        assert "COMPLETED" in records.get(job, ""), records
        if "ArrayTaskId=" in records[job]:  # jobcomp and scontrol name the array task
            assert f"ArrayJobId={array[1]}" in records[job]
            assert f"ArrayTaskId={k}" in records[job]
    for job in infer_jobs:
        assert "COMPLETED" in records.get(job, ""), records

    # a second run submits nothing: the folds are done
    again = run_sh(*common, "--stage", "2", "--stop_stage", "2", env=slurm_env)
    assert "fold 0 is trained" in again.stdout and "submitted" not in again.stdout

    # run.sh needs no terminal: stages 4-5 as a batch job of their own (local backend inside)
    out = tmp_path / "batch.out"
    wrapped = shlex.join(["./run.sh", *common, "--stage", "4"])
    batch = subprocess.run(
        ["sbatch", "--wait", f"--output={out}", f"--chdir={ROOT}", "--wrap", wrapped],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"SED_CMD_BACKEND": "local"},
    )
    assert batch.returncode == 0, out.read_text()[-3000:] if out.exists() else batch.stderr
    assert "stage 5: scoring" in out.read_text()
    result = json.loads((exp / "results.json").read_text())
    assert 0.0 < result["oof"]["lwlrap"] <= 1.0


def test_sbatch_run_sh_directly(cluster: None, tmp_path: Path) -> None:
    out = tmp_path / "batch.out"
    # stage 6 > stop stage 5: nothing runs, but the options, config and environment are checked
    proc = subprocess.run(
        [
            "sbatch",
            "--wait",
            f"--output={out}",
            "./run.sh",
            "--stage",
            "6",
            "--workdir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, out.read_text() if out.exists() else proc.stderr


FAKE_TRAINER = """\
#!/usr/bin/env bash
# first run: "train" until TERM, then save a state file and exit 75; a later run resumes from it
state=state.$1
if [[ -f ${state} ]]; then echo "resumed from ${state}"; exit 0; fi
trap 'echo "saving ${state}"; touch "${state}"; exit 75' TERM
echo training
while true; do sleep 0.2; done
"""


def start_slurm_sh(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(SLURM), "--config", str(tmp_path / "slurm.conf"), *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"SED_SLURM_POLL": "1"},
    )


def wait_for(predicate, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.3)


def array_task_ids(array_job: str) -> dict[str, str]:
    """array task index -> its own job id, from squeue."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", array_job, "-o", "%K %A"],
        capture_output=True,
        text=True,
    ).stdout
    return dict(line.split() for line in out.splitlines() if len(line.split()) == 2)


@pytest.mark.slow
def test_preempted_task_requeues_and_resumes_a_cancelled_one_does_not(
    cluster: None, tmp_path: Path
) -> None:
    m = re.search(r"cred_expire=(\d+)", slurm_config().get("AuthInfo", ""))
    delay = int(m[1]) if m else 120
    if delay > 30:
        pytest.skip(
            f"this cluster starts a requeued job only after {delay} s (AuthInfo cred_expire)"
        )
    trainer = tmp_path / "trainer.sh"
    trainer.write_text(textwrap.dedent(FAKE_TRAINER))
    trainer.chmod(0o755)
    (tmp_path / "slurm.conf").write_text(
        "command sbatch --signal=B:TERM@60 --requeue\ndefault gpu=0\noption gpu=0\n"
    )
    proc = start_slurm_sh(tmp_path, "JOB=1:2", "log/t.JOB.log", "./trainer.sh", "JOB")
    logs = {k: tmp_path / "log" / f"t.{k}.log" for k in (1, 2)}
    wait_for(lambda: all(p.exists() and "training" in p.read_text() for p in logs.values()))
    array = re.search(r"# Started at .* array task (\d+)_", logs[1].read_text())[1]
    tasks = array_task_ids(array)
    # what Slurm does before the time limit with --signal=B:TERM: TERM to the batch shell only
    subprocess.run(["scancel", "--batch", "--signal=TERM", f"{array}_1"], check=True)
    # a user's scancel: TERM to every process of the task, state CANCELLED: no requeue
    subprocess.run(["scancel", f"{array}_2"], check=True)
    out, err = proc.communicate(timeout=delay + 90)

    assert proc.returncode == 75, out + err
    first = logs[1].read_text()
    assert "saving state.1" in first and "# Preempted (code 75)" in first
    assert first.count("# Started at") == 2 and ", restart 1)" in first
    assert "resumed from state.1" in first and ENDED.match(first.splitlines()[-1])[1] == "0"
    second = logs[2].read_text()
    assert "# Preempted" not in second and ENDED.match(second.splitlines()[-1])[1] == "75"
    assert f"job {array}_1 ended with code 0" in out
    assert f"job {array}_2 was interrupted and saved its state (code 75)" in err
    assert "COMPLETED" in slurm_records([tasks["1"]]).get(tasks["1"], "")


@pytest.mark.slow
def test_interrupting_the_launcher_cancels_the_job(cluster: None, tmp_path: Path) -> None:
    (tmp_path / "slurm.conf").write_text("command sbatch\n")
    proc = start_slurm_sh(tmp_path, "long.log", "sleep", "300")
    log = tmp_path / "long.log"
    wait_for(lambda: log.exists() and "Slurm job" in log.read_text())
    job = STARTED.match(log.read_text().splitlines()[1])[2]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and f"cancelling job {job}" in err

    def gone() -> bool:
        out = subprocess.run(
            ["squeue", "-h", "-t", "all", "-j", job, "-o", "%T"], capture_output=True, text=True
        ).stdout
        return out.strip() in ("", "CANCELLED")

    wait_for(gone, timeout=30)
