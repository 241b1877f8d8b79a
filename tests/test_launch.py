"""Job backends without a cluster: local.sh (JOB ranges, parallelism, logs, failures, signals) and
the slurm backend's config mapping, job script and submit/wait/report loop (with stand-in commands).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sed.launch.slurm import (
    Job,
    LaunchError,
    SlurmConf,
    array_spec,
    job_script_path,
    parse_job_ids,
    read_end_status,
)
from sed.launch.slurm import (
    main as slurm_main,
)

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ROOT / "sed" / "launch" / "local.sh"
END = re.compile(
    r"^# Ended \(code (\d+)\) at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d, elapsed time \d+ seconds$"
)


def local(*args: str, cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LOCAL), *args], cwd=cwd, capture_output=True, text=True, timeout=60, **kw
    )


def write_exe(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


# ------------------------------------------------------------------------------------ local.sh
def test_local_single_command_log_format_and_status(tmp_path: Path) -> None:
    proc = local("logs/one.log", "sh", "-c", "echo out; echo err >&2; exit 4", cwd=tmp_path)
    assert proc.returncode == 4
    assert "out" in proc.stdout  # one task at a time: its output is shown on the console
    lines = (tmp_path / "logs" / "one.log").read_text().splitlines()
    assert lines[0] == "# sh -c echo out; echo err >&2; exit 4"
    assert re.match(r"# Started at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d on \S+$", lines[1])
    assert set(lines[2:4]) == {"out", "err"}
    assert END.match(lines[-1]) and END.match(lines[-1])[1] == "4"
    assert "command failed (code 4): see logs/one.log" in proc.stderr


def test_local_job_range_substitutes_log_and_command(tmp_path: Path) -> None:
    proc = local("JOB=2:4", "log/t.JOB.log", "echo", "task=JOB", "out/JOB", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for k in (2, 3, 4):
        lines = (tmp_path / "log" / f"t.{k}.log").read_text().splitlines()
        assert lines[0] == f"# echo task={k} out/{k}"
        assert lines[2] == f"task={k} out/{k}"
        assert END.match(lines[-1])[1] == "0"
    assert sorted(p.name for p in (tmp_path / "log").iterdir()) == ["t.2.log", "t.3.log", "t.4.log"]


def test_local_substitutes_only_the_named_placeholder(tmp_path: Path) -> None:
    """A path holding "JOB" stays intact when the caller names another placeholder (run.sh does
    when its paths contain JOB)."""
    base = tmp_path / "JOBS it's"
    proc = local(
        "JOB1=0:1", f"{base}/foldJOB1/t.log", "echo", f"{base}/foldJOB1", "--fold", "JOB1",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    for k in (0, 1):
        lines = (base / f"fold{k}" / "t.log").read_text().splitlines()
        assert lines[2] == f"{base}/fold{k} --fold {k}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["JOBS it's"]


def test_local_job_list_runs_only_the_listed_indices(tmp_path: Path) -> None:
    proc = local("JOB=0,3,5:6", "l/JOB.log", "true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "l").iterdir()) == [
        "0.log",
        "3.log",
        "5.log",
        "6.log",
    ]


def overlap(tmp_path: Path, n_tasks: int, max_jobs_run: int) -> int:
    """Run tasks that record when they run; the largest number that ran at the same time."""
    tmp_path.mkdir()
    task = (
        "import sys, time; t0 = time.time(); time.sleep(1.0); print(sys.argv[1], t0, time.time())"
    )
    proc = local(
        "--max_jobs_run",
        str(max_jobs_run),
        f"JOB=1:{n_tasks}",
        "p/JOB.log",
        sys.executable,
        "-c",
        task,
        "JOB",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    spans = []
    for k in range(1, n_tasks + 1):
        _, start, end = (tmp_path / "p" / f"{k}.log").read_text().splitlines()[2].split()
        spans.append((float(start), float(end)))
    return max(sum(s <= t < e for s, e in spans) for t, _ in spans)


def test_local_runs_at_most_max_jobs_run_tasks_at_once(tmp_path: Path) -> None:
    assert overlap(tmp_path / "a", 4, 2) == 2
    assert overlap(tmp_path / "b", 3, 1) == 1  # the default for training: one after the other


def test_local_failed_task_is_named_and_sets_the_status(tmp_path: Path) -> None:
    proc = local(
        "--max_jobs_run",
        "3",
        "JOB=1:3",
        "f/JOB.log",
        "sh",
        "-c",
        "echo task JOB; exit $((JOB == 2 ? 3 : 0))",
        cwd=tmp_path,
    )
    assert proc.returncode == 3
    assert "task 2 failed (code 3): see f/2.log" in proc.stderr
    assert "1 of 3 tasks failed" in proc.stderr
    assert "task 1 failed" not in proc.stderr and "task 3 failed" not in proc.stderr
    # the other tasks ran to the end
    for k, code in ((1, "0"), (2, "3"), (3, "0")):
        assert END.match((tmp_path / "f" / f"{k}.log").read_text().splitlines()[-1])[1] == code


@pytest.mark.parametrize(
    "args",
    [
        ("JOB=3:1", "l/JOB.log", "true"),
        ("JOB=a", "l/JOB.log", "true"),
        ("JOB=1:2", "l/fixed.log", "true"),
        ("--max_jobs_run", "0", "l.log", "true"),
        ("--bogus", "1", "l.log", "true"),
        ("only-a-log",),
    ],
)
def test_local_usage_errors(tmp_path: Path, args: tuple[str, ...]) -> None:
    proc = local(*args, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr
    assert not list(tmp_path.iterdir())  # nothing ran


TRAINER = """\
import signal, sys, time
def stop(signum, frame):
    print("saving last.pt", flush=True)
    sys.exit(75)
signal.signal(signal.SIGTERM, stop)
open(sys.argv[1], "w").close()  # ready
time.sleep(30)
print("not interrupted")
"""


def test_local_forwards_term_and_keeps_the_resumable_status(tmp_path: Path) -> None:
    """TERM to local.sh reaches the command, whose status 75 is the launch's; no later task runs."""
    (tmp_path / "trainer.py").write_text(TRAINER)
    proc = subprocess.Popen(
        [str(LOCAL), "JOB=0:1", "t/JOB.log", sys.executable, "trainer.py", "ready.JOB"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for _ in range(200):
        if (tmp_path / "ready.0").exists():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 75
    lines = (tmp_path / "t" / "0.log").read_text().splitlines()
    assert "saving last.pt" in lines and END.match(lines[-1])[1] == "75"
    assert not (tmp_path / "t" / "1.log").exists() and "task 1 not run" in err


# ------------------------------------------------------------------------------------ slurm.conf
CONF = """\
# test config
command sbatch --export=ALL --signal=B:TERM@90 --requeue   # every job
default gpu=0
option gpu=0 --partition=cpu
option gpu=* --partition=gpu --gres=gpu:$0
option num_threads=* --cpus-per-task=$0
option mem=* --mem=$0
option time=* --time=$0
"""


def test_slurm_conf_maps_generic_options_to_sbatch_flags() -> None:
    conf = SlurmConf.parse(CONF)
    assert conf.command == ["sbatch", "--export=ALL", "--signal=B:TERM@90", "--requeue"]
    fixed = ["--export=ALL", "--signal=B:TERM@90", "--requeue"]
    assert conf.flags({}) == [*fixed, "--partition=cpu"]  # the default gpu=0
    flags = conf.flags({"gpu": "2", "num_threads": "8", "mem": "16G", "time": "4:00:00"})
    assert flags == [
        *fixed,
        "--partition=gpu",
        "--gres=gpu:2",
        "--cpus-per-task=8",
        "--mem=16G",
        "--time=4:00:00",
    ]


def test_shipped_slurm_conf_parses_and_maps_gpus() -> None:
    conf = SlurmConf.load(ROOT / "conf" / "slurm.conf")
    assert conf.command[0] == "sbatch"
    assert "--requeue" in conf.command and any(
        f.startswith("--signal=B:TERM@") for f in conf.command
    )
    assert "--gres=gpu:1" in conf.flags({"gpu": "1"})
    assert not any("gres" in f for f in conf.flags({"gpu": "0"}))


def test_slurm_conf_errors_name_the_problem() -> None:
    with pytest.raises(LaunchError, match=r"x.conf:2: unknown directive 'optoin'"):
        SlurmConf.parse("command sbatch\noptoin gpu=* --gres=gpu:$0\n", "x.conf")
    conf = SlurmConf.parse("option gpu=0\noption gpu=1 --gres=gpu:1\n")
    with pytest.raises(LaunchError, match="--gpu 2: the slurm config allows only 0, 1"):
        conf.flags({"gpu": "2"})
    with pytest.raises(LaunchError, match=r"no 'option mem=\.\.\.' line"):
        conf.flags({"mem": "4G"})


def test_job_ids_and_array_spec() -> None:
    assert parse_job_ids("1:4") == [1, 2, 3, 4]
    assert parse_job_ids("0,2,5:7,2") == [0, 2, 5, 6, 7]
    for bad in ("4:1", "a", "1:", ""):
        with pytest.raises(LaunchError):
            parse_job_ids(bad)
    assert array_spec([0, 1, 2]) == "0-2"
    assert array_spec([0, 2, 5, 6, 7], max_jobs_run=2) == "0,2,5-7%2"
    assert array_spec([3]) == "3"


def test_job_script_path_is_next_to_the_log() -> None:
    assert job_script_path(Path("exp/x/infer/best/infer.log")) == Path(
        "exp/x/infer/best/infer.sbatch"
    )
    assert job_script_path(Path("exp/x/foldJOB/train.log")) == Path("exp/x/foldJOB.train.sbatch")
    assert job_script_path(Path("exp/x/log/train.JOB.log")) == Path("exp/x/log/train.JOB.sbatch")


# ------------------------------------------------------------------------------------ job script
def make_job(tmp_path: Path, command: list[str], ids: tuple[int, ...] | None = (0, 1)) -> Job:
    conf = SlurmConf.parse(CONF)
    return Job(
        command=command,
        log=Path("exp/foldJOB/train.log") if ids is not None else Path("exp/infer.log"),
        ids=list(ids) if ids is not None else None,
        flags=conf.flags({"gpu": "1", "time": "1:00:00"}),
        workdir=tmp_path,
    )


def sbatch_directives(script: str) -> list[str]:
    return [
        line.removeprefix("#SBATCH ") for line in script.splitlines() if line.startswith("#SBATCH")
    ]


def test_slurm_named_placeholder_keeps_paths_with_job(tmp_path: Path) -> None:
    from sed.launch.slurm import parse_args

    conf = tmp_path / "slurm.conf"
    conf.write_text("command sbatch --export=ALL\n")
    log = tmp_path / "JOBS" / "foldJOB1" / "train.log"
    job, _ = parse_args(
        ["--config", str(conf), "JOB1=0:1", str(log), "train", "--out", "/x/JOBS/foldJOB1"]
    )
    assert job.ids == [0, 1] and job.token == "JOB1"
    assert job.task_log(1) == tmp_path / "JOBS" / "fold1" / "train.log"
    assert '/x/JOBS/fold"${JOB}"' in job.script()
    assert job_script_path(log, job.token) == tmp_path / "JOBS" / "foldJOB1.train.sbatch"


def test_job_script_has_the_array_output_signal_and_mapped_flags(tmp_path: Path) -> None:
    job = make_job(
        tmp_path, ["python", "-m", "sed.bin.train", "--fold", "JOB", "--conf", "a b.yaml"]
    )
    job.max_jobs_run = 1
    script = job.script()
    assert script.startswith("#!/usr/bin/env bash\n")
    directives = sbatch_directives(script)
    assert directives == [
        "--job-name=exp/foldJOB/train",
        f"--output={tmp_path}/exp/fold%a/train.log",
        "--open-mode=append",
        "--array=0-1%1",
        "--export=ALL",
        "--signal=B:TERM@90",
        "--requeue",
        "--partition=gpu",
        "--gres=gpu:1",
        "--time=1:00:00",
    ]
    assert "JOB=${SLURM_ARRAY_TASK_ID}" in script
    assert """cmd=(python -m sed.bin.train --fold "${JOB}" --conf 'a b.yaml')""" in script
    assert "requeue=1" in script and "OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}" in script
    if shutil.which("shellcheck"):
        check = subprocess.run(["shellcheck", "-"], input=script, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout
    # a single job: no array, the log as given
    single = make_job(tmp_path, ["echo", "JOB"], ids=None).script()
    assert not any(d.startswith("--array") for d in sbatch_directives(single))
    assert f"--output={tmp_path}/exp/infer.log" in sbatch_directives(single)
    assert "cmd=(echo JOB)" in single  # JOB is literal without a range


def fake_scontrol(bindir: Path, state: str) -> Path:
    """scontrol that reports ``state`` for ``show job`` and records ``requeue`` calls."""
    calls = bindir / "scontrol.calls"
    write_exe(
        bindir / "scontrol",
        f"""\
        #!/usr/bin/env bash
        echo "$*" >> {calls}
        if [[ $1 == show ]]; then echo "JobId=$4 JobName=x JobState={state} Reason=None"; fi
        """,
    )
    return calls


def run_job_script(
    tmp_path: Path, command: list[str], state: str = "RUNNING", term: bool = False
) -> tuple[int, list[str], list[str]]:
    """Run a job script as slurmd would for array task 1 (output to the log); TERM it if asked."""
    job = make_job(tmp_path, command)
    script = tmp_path / "job.sbatch"
    script.write_text(job.script())
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    calls = fake_scontrol(bindir, state)
    log = tmp_path / "exp" / "fold1" / "train.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = os.environ | {
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "SLURM_JOB_ID": "42",
        "SLURM_ARRAY_JOB_ID": "41",
        "SLURM_ARRAY_TASK_ID": "1",
    }
    with log.open("a") as out:
        proc = subprocess.Popen(
            ["bash", str(script)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
        if term:
            for _ in range(200):
                if (tmp_path / "ready.1").exists():
                    break
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
    requeues = [
        c for c in (calls.read_text().splitlines() if calls.exists() else []) if "requeue" in c
    ]
    return rc, log.read_text().splitlines(), requeues


def test_job_script_writes_the_local_log_format(tmp_path: Path) -> None:
    rc, lines, requeues = run_job_script(tmp_path, ["sh", "-c", "echo fold JOB; exit 3"])
    assert rc == 3 and not requeues
    assert lines[0] == "# sh -c echo fold 1; exit 3"
    assert re.match(r"# Started at .* on \S+ \(Slurm job 42, array task 41_1\)$", lines[1])
    assert lines[2] == "fold 1"
    assert END.match(lines[-1])[1] == "3"
    assert read_end_status(tmp_path / "exp" / "fold1" / "train.log") == 3


def test_job_script_forwards_term_and_requeues_a_saved_task(tmp_path: Path) -> None:
    (tmp_path / "trainer.py").write_text(TRAINER)
    rc, lines, requeues = run_job_script(
        tmp_path, [sys.executable, "trainer.py", "ready.JOB"], term=True
    )
    assert rc == 75
    assert "saving last.pt" in lines and "not interrupted" not in lines
    assert lines[-1].startswith("# Preempted (code 75)") and requeues == ["requeue 41_1"]
    # the task is not over: the waiter keeps waiting for the requeued run
    assert read_end_status(tmp_path / "exp" / "fold1" / "train.log") is None


def test_job_script_does_not_requeue_a_cancelled_job(tmp_path: Path) -> None:
    (tmp_path / "trainer.py").write_text(TRAINER)
    rc, lines, requeues = run_job_script(
        tmp_path, [sys.executable, "trainer.py", "ready.JOB"], state="CANCELLED", term=True
    )
    assert rc == 75 and not requeues
    assert END.match(lines[-1])[1] == "75"


# ------------------------------------------------------------------------------------ submit/wait
FAKE_SBATCH = """\
#!/usr/bin/env python3
# sbatch stand-in: runs the script's array tasks at once, output appended to --output
import os, re, subprocess, sys
script = sys.argv[-1]
text = open(script).read()
out = re.search(r"^#SBATCH --output=(.*)$", text, re.M)[1]
array = re.search(r"^#SBATCH --array=([\\d,-]+)", text, re.M)
ids = []
for part in (array[1].split(",") if array else []):
    a, _, b = part.partition("-")
    ids += range(int(a), int(b or a) + 1)
with open(os.path.join(os.path.dirname(script), "sbatch.args"), "w") as f:
    f.write(" ".join(sys.argv[1:]))
for i in ids or [None]:
    env = dict(os.environ, SLURM_JOB_ID=str(100 + (i or 0)))
    if i is not None:
        env.update(SLURM_ARRAY_JOB_ID="99", SLURM_ARRAY_TASK_ID=str(i))
    path = out.replace("%a", str(i)).replace("%%", "%")
    with open(path, "a") as log:
        subprocess.run(["bash", script], stdout=log, stderr=subprocess.STDOUT, env=env)
print("99;cluster")
"""


def test_slurm_backend_submits_waits_and_reports(tmp_path: Path, monkeypatch, capsys) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    write_exe(bindir / "sbatch", FAKE_SBATCH)
    write_exe(bindir / "squeue", "#!/bin/sh\nexit 0\n")  # the job has left the queue
    conf = tmp_path / "slurm.conf"
    conf.write_text("command sbatch --export=ALL\noption gpu=* --gres=gpu:$0\n")
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("SED_SLURM_POLL", "0.01")
    monkeypatch.chdir(tmp_path)
    cmd = ["sh", "-c", "echo fold JOB; exit $((JOB == 2 ? 5 : 0))"]
    rc = slurm_main(["--config", str(conf), "--gpu", "1", "JOB=0:2", "exp/foldJOB/train.log", *cmd])
    out, err = capsys.readouterr()
    assert rc == 5
    assert "submitted array job 99 (3 tasks: 0-2)" in out
    assert "job 99_0 ended with code 0: exp/fold0/train.log" in out
    assert "job 99_2 FAILED with code 5: see exp/fold2/train.log" in err and "1 of 3" in err
    assert "  | fold 2" in err  # the end of the failed task's log
    script = tmp_path / "exp" / "foldJOB.train.sbatch"
    assert "--gres=gpu:1" in sbatch_directives(script.read_text())
    assert (tmp_path / "exp" / "sbatch.args").read_text() == f"--parsable {script}"
    for k in (0, 1):
        lines = (tmp_path / "exp" / f"fold{k}" / "train.log").read_text().splitlines()
        assert lines[2] == f"fold {k}" and END.match(lines[-1])[1] == "0"

    # a clean resubmission replaces the old logs instead of appending to them
    cmd = ["sh", "-c", "echo again JOB"]
    rc = slurm_main(["--config", str(conf), "JOB=0:2", "exp/foldJOB/train.log", *cmd])
    assert rc == 0
    assert (tmp_path / "exp" / "fold2" / "train.log").read_text().count("# Started") == 1


def test_slurm_backend_usage_errors(tmp_path: Path, capsys) -> None:
    conf = tmp_path / "slurm.conf"
    conf.write_text("command sbatch\n")
    assert slurm_main(["--config", str(conf), "JOB=1:2", "fixed.log", "true"]) == 2
    assert "log name must contain JOB" in capsys.readouterr().err
    assert slurm_main(["--config", str(conf), "--gpu", "1", "x.log", "true"]) == 2
    assert "no 'option gpu=...' line" in capsys.readouterr().err
    assert slurm_main(["--config", str(tmp_path / "none.conf"), "x.log", "true"]) == 2
    assert "not found" in capsys.readouterr().err
