"""Faults survived, nothing lost: ``kill -9`` during stages 1-4 and failing tasks under run.sh.

Each scenario runs the real command, kills its whole process group with SIGKILL (or makes it end
abruptly at a chosen point, like a kill, through a test-only wrapper), checks that no partial
file is present under a final name, reruns the same command and compares the outputs with those
of an uninterrupted run. One tiny experiment (stages 0-4 through ``./run.sh``, two folds, stage 3
in two parts) is made once for the module and is the reference of every comparison.
"""

from __future__ import annotations

import filecmp
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from sed.data.synth import SynthConfig, generate
from sed.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# 6 steps with an evaluation (and checkpoints) every 2: a kill after the first save lands mid-run;
# two dumps (speeds 1.0 and 1.1), renamed one after the other: a kill may fall between them
CONF = """\
# faults: conf/cnn/tiny.yaml for 6 steps with 3 evaluations, for the kill -9 tests
base: conf/cnn/tiny.yaml
features: {speed_perturb: [1.1]}
train: {max_steps: 6, eval_every_steps: 2, log_every_steps: 2, batch_size: 4, figures: false}
"""
# Runs a module like `python -m`, but ends the process with os._exit(137) right after the n-th
# call of <owner>.<name> whose arguments mention <match>: no finally blocks, no flushes, no
# cleanup, i.e. what a SIGKILL at that exact point leaves behind. Test-only fault injection.
CRASH_AFTER = """
import importlib, os, runpy, sys
module, target, match, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
owner, name = target.rsplit(".", 1)
obj = importlib.import_module(owner)
real = getattr(obj, name)
seen = 0
def crashing(*args, **kwargs):
    global seen
    out = real(*args, **kwargs)
    if match in " ".join(map(str, args)):
        seen += 1
        if seen == n:
            os._exit(137)
    return out
setattr(obj, name, crashing)
sys.argv = [module, *sys.argv[5:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


@dataclass
class Setup:
    raw: Path
    work: Path
    conf: Path
    data: Path  # manifests of stage 0
    dump: Path  # dump root of stage 1
    exp: Path  # the reference experiment (stages 2-4 uninterrupted)
    tmp: Path


def run_sh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ROOT / "run.sh"), *args], cwd=ROOT, capture_output=True, text=True, timeout=900
    )


def must(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (
        f"{' '.join(map(str, proc.args))} failed ({proc.returncode}):\n"
        f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def env(threads: int | None = None) -> dict[str, str]:
    e = dict(os.environ, PYTHONHASHSEED="0")  # as path.sh sets it for the recipes
    if threads is not None:  # as run.sh gives each of --nj inference tasks
        e["OMP_NUM_THREADS"] = str(threads)
    return e


def run_py(*args: str, threads: int | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env(threads),
        start_new_session=True,
    )


def crash_after(
    module: str, target: str, match: str, n: int, *args: str, threads: int | None = None
) -> None:
    """Run ``python -m module args`` until the n-th call of ``target`` that mentions ``match``."""
    proc = run_py("-c", CRASH_AFTER, module, target, match, str(n), *args, threads=threads)
    assert proc.returncode == 137, (
        f"{module} was to end after call {n} of {target}({match}) but ended with "
        f"{proc.returncode}:\n{proc.stderr[-3000:]}"
    )


def kill_when(
    args: list[str],
    ready: Callable[[], bool],
    threads: int | None = None,
    must_kill: bool = True,
    timeout: float = 300,
) -> bool:
    """Start ``python args`` in a new session and SIGKILL its process group once ``ready()``.

    Returns:
        Whether it was killed. With ``must_kill`` it fails if the command ended first (the kill
        point was never reached, so the scenario would prove nothing); a point that may come
        too late (a timed one, or a file that exists only for an instant) passes ``False``.
    """
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env(threads),
        start_new_session=True,
    )
    try:
        while proc.poll() is None:
            if ready():
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"{args}: kill point not reached in {timeout} s")
            time.sleep(0.002)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{err[-2000:]}"
        assert not must_kill, f"{args} ended before the kill point"
        return False
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def after(seconds: float) -> Callable[[], bool]:
    """A kill point ``seconds`` after the first poll (just after the command started)."""
    start: list[float] = []

    def ready() -> bool:
        start.append(time.monotonic())
        return start[-1] - start[0] >= seconds

    return ready


def h5_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of an HDF5 file by its path (opening fails on a truncated file)."""
    out: dict[str, np.ndarray] = {}

    def take(name: str, obj: h5py.HLObject) -> None:
        if isinstance(obj, h5py.Dataset):
            out[name] = obj[()]

    with h5py.File(path, "r") as h5:
        h5.visititems(take)
    return out


def assert_same_h5(a: Path, b: Path) -> None:
    x, y = h5_arrays(a), h5_arrays(b)
    assert x.keys() == y.keys(), f"{a} and {b} hold other datasets"
    for k in x:
        assert np.array_equal(x[k], y[k], equal_nan=True), f"{b}: /{k} differs from {a}"


def assert_same_files(ref: Path, out: Path, names: list[str]) -> None:
    for name in names:
        assert (out / name).exists(), f"{out / name} missing after the rerun"
        if name.endswith(".h5"):
            assert_same_h5(ref / name, out / name)
        else:
            assert filecmp.cmp(ref / name, out / name, shallow=False), f"{out / name} differs"


def logged_command(log: Path, **replace: str) -> list[str]:
    """The ``python`` arguments run.sh ran for a task (its log's first line), with some option
    values replaced (``expdir="..."`` sets ``--expdir``): the tests rerun what run.sh runs."""
    words = shlex.split(log.read_text().splitlines()[0].removeprefix("# "))
    assert words[0] == "python", f"{log}: not a python command: {words}"
    args = words[1:]
    for name, value in replace.items():
        i = args.index(f"--{name}")
        args[i + 1] = value
    return args


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    tmp = tmp_path_factory.mktemp("faults")
    raw = tmp / "raw"
    generate(
        raw,
        SynthConfig(n_species=3, n_train=6, n_test=3, duration=4.0, sample_rate=16000, seed=7),
        progress=False,
    )
    conf = tmp / "conf" / "cnn" / "faults.yaml"
    conf.parent.mkdir(parents=True)
    conf.write_text(CONF)
    work = tmp / "work"
    args = ["--datadir", str(raw), "--conf", str(conf), "--workdir", str(work), "--nj", "2",
            "--stop_stage", "4"]  # fmt: skip
    must(run_sh(*args))
    exp = work / "exp" / "rfcx" / "cnn" / "faults"
    assert (exp / "infer" / "best" / "submission.csv").exists()
    # where run.sh put the manifests and the dump root (named after the corpus)
    (recordings,) = (work / "data").rglob("recordings.csv")
    (feats,) = (work / "dump").rglob("sp1.0/feats.h5")
    return Setup(raw, work, conf, recordings.parent, feats.parents[2], exp, tmp)


# ---------------------------------------------------------------------------------------- stage 1
def dump_log(s: Setup) -> Path:
    (log,) = (s.dump / "log").glob("dump.*.log")
    return log


def dump_args(s: Setup, dumpdir: Path) -> list[str]:
    """Stage 1 as run.sh ran it, into another dump root."""
    return [*logged_command(dump_log(s), dumpdir=str(dumpdir)), "--no_progress"]


def test_kill_during_feature_dump(setup: Setup) -> None:
    s = setup
    out_root = s.tmp / "dump_killed"
    (ref,) = (p for p in s.dump.iterdir() if p.name != "log")
    took = float(dump_log(s).read_text().split("elapsed time ")[-1].split()[0])
    names = ["sp1.0/feats.h5", "sp1.1/feats.h5", "skipped.csv", "features.yaml"]
    out = out_root / ref.name

    def temp_files() -> bool:
        return any(out.glob("sp*/.feats.h5.*.tmp"))

    def first_dump() -> bool:
        return any(out.glob("sp*/feats.h5"))

    def check_nothing_partial() -> None:
        for name in names[:2]:
            if (out / name).exists():  # a dump under its final name is whole
                assert_same_h5(ref / name, out / name)

    # a temporary dump exists from the first recording to the rename: a sure kill point
    points = [(temp_files, True), (after(0.7 * took), False), (first_dump, False)]
    for ready, sure in points:
        kill_when(dump_args(s, out_root), ready, must_kill=sure)
        check_nothing_partial()
        if ready is temp_files:
            assert temp_files(), "the killed run left no temporary dump: nothing was tested"
    must(run_py(*dump_args(s, out_root)))
    assert_same_files(ref, out, names)
    assert (out / ".done").exists()
    assert not temp_files(), "temporary dumps of killed runs are left behind"


def test_two_dumps_of_one_folder_at_once(setup: Setup) -> None:
    """Two experiments with the same features may run stage 1 together: one waits for the
    other (and its clean-up of killed runs' files never removes the live run's)."""
    s = setup
    root = s.tmp / "dump_twice"
    procs = [
        subprocess.Popen([sys.executable, *dump_args(s, root)], cwd=ROOT, env=env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(2)
    ]  # fmt: skip
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    (out,) = root.iterdir()
    assert_same_files(s.dump / out.name, out, ["sp1.0/feats.h5", "sp1.1/feats.h5", "skipped.csv"])


def test_dump_complete_implies_its_skipped_list(setup: Setup) -> None:
    """Ended right after the first dump was renamed into place: the rerun skips that dump, and
    skipped.csv (which lists what the dumps lack) must already be there."""
    s = setup
    root = s.tmp / "dump_crash"
    crash_after("sed.bin.dump", "os.replace", "feats.h5", 1, *dump_args(s, root)[2:])
    (out,) = root.iterdir()
    assert (out / "sp1.0" / "feats.h5").exists() or (out / "sp1.1" / "feats.h5").exists()
    assert (out / "skipped.csv").exists(), "a dump is in place but its skipped.csv is not"
    must(run_py(*dump_args(s, root)))
    names = ["sp1.0/feats.h5", "sp1.1/feats.h5", "skipped.csv"]
    assert_same_files(s.dump / out.name, out, names)


# ---------------------------------------------------------------------------------------- stage 2
def train_args(s: Setup, expdir: Path) -> list[str]:
    """Fold 0's training as run.sh ran it, into another experiment folder."""
    return [*logged_command(s.exp / "fold0" / "train.log", expdir=str(expdir)), "--no_progress"]


def check_checkpoints_consistent(ckpt: Path) -> None:
    """What a killed run leaves is never half a state: every checkpoint under its final name
    loads, and the resume point (last.pt) never names a best model that best.pt does not hold."""
    for p in ckpt.glob("*.pt"):
        load_checkpoint(p)
    if (ckpt / "last.pt").exists():
        last = load_checkpoint(ckpt / "last.pt")
        assert (ckpt / "best.pt").exists(), "last.pt was saved before the best.pt it refers to"
        assert load_checkpoint(ckpt / "best.pt")["step"] == last["best_step"], (
            "last.pt's best_step is not the step of best.pt: a resume would keep a stale best.pt"
        )


def assert_same_training(ref: Path, out: Path) -> None:
    """The trainer promises exact resume (tests/test_trainer.py): equal weights and metrics."""
    for name in ("last.pt", "best.pt"):
        a, b = load_checkpoint(ref / name), load_checkpoint(out / name)
        assert same_weights(a["model"], b["model"]), f"{out / name}: weights differ"
        assert same_weights(a["optimizer"]["state"][0], b["optimizer"]["state"][0])
        assert (a["step"], a["best_step"], a["best"]) == (b["step"], b["best_step"], b["best"])
        assert a["history"] == b["history"], f"{out / name}: validation history differs"


def test_kill_during_training_resumes_exactly(setup: Setup) -> None:
    s = setup
    ref = s.exp / "fold0" / "checkpoints"
    expdir = s.tmp / "exp_killed"
    ckpt = expdir / "fold0" / "checkpoints"

    def first_save() -> bool:  # in the middle of a save, or just after the first one
        return (ckpt / "last.pt").exists() or any(ckpt.glob(".*.tmp"))

    kill_when(train_args(s, expdir), first_save)
    check_checkpoints_consistent(ckpt)
    kill_when(train_args(s, expdir), lambda: (ckpt / "last.pt").exists() and
              load_checkpoint(ckpt / "last.pt")["step"] >= 4)  # fmt: skip
    check_checkpoints_consistent(ckpt)
    assert load_checkpoint(ckpt / "last.pt")["step"] < 6, "killed after the end of training"
    must(run_py(*train_args(s, expdir)))
    assert_same_training(ref, ckpt)
    summary = json.loads((expdir / "fold0" / "train_summary.json").read_text())
    reference = json.loads((s.exp / "fold0" / "train_summary.json").read_text())
    summary.pop("finished"), reference.pop("finished")
    assert summary == reference


def test_crash_between_checkpoint_writes(setup: Setup) -> None:
    """Ended right after the first file of the first evaluation is written (the SIGKILL test
    rarely lands between two files): the rerun still ends as the uninterrupted run did, best.pt
    included. (With last.pt written first, the resumed run believed best.pt existed.)"""
    s = setup
    expdir = s.tmp / "exp_crash"
    ckpt = expdir / "fold0" / "checkpoints"
    crash_after("sed.bin.train", "sed.train.trainer.save_checkpoint", ".pt", 1,
                *train_args(s, expdir)[2:])  # fmt: skip
    check_checkpoints_consistent(ckpt)
    must(run_py(*train_args(s, expdir)))
    assert_same_training(s.exp / "fold0" / "checkpoints", ckpt)


# ---------------------------------------------------------------------------------------- stage 3
OUTPUTS_3 = ["oof.h5", "oof.csv", "oof_frame.csv", "test.h5", "test.csv", "test_frame.csv"]


def copy_models(s: Setup, dest: Path) -> Path:
    """The reference experiment without its predictions."""
    shutil.copytree(s.exp, dest, ignore=shutil.ignore_patterns("infer"))
    return dest


def infer_args(s: Setup, expdir: Path, part: int | None) -> list[str]:
    """A part of stage 3 as run.sh ran it (``part=None``: one job over everything)."""
    log = s.exp / "infer" / "best" / "infer.1.log"
    if part is not None:
        return logged_command(log, expdir=str(expdir), part=str(part))
    args = logged_command(log, expdir=str(expdir))
    for name in ("--part", "--nparts"):
        i = args.index(name)
        del args[i : i + 2]
    return args


def test_kill_during_inference_parts_and_merge(setup: Setup) -> None:
    s = setup
    expdir = copy_models(s, s.tmp / "exp_infer")
    out = expdir / "infer" / "best"
    parts = out / "parts"
    part1, part2 = infer_args(s, expdir, 1), infer_args(s, expdir, 2)
    assert part1[part1.index("--nparts") + 1] == "2"
    merge = [*infer_args(s, expdir, None), "--merge", "2"]

    def check_part(path: Path) -> None:
        if path.exists():  # a part under its final name is whole: it opens and has its attrs
            with h5py.File(path, "r") as h5:
                assert "attrs" in h5.attrs and ("oof" in h5 or "test" in h5)

    t0 = time.monotonic()
    must(run_py(*part2, threads=1))
    took = time.monotonic() - t0
    killed = []
    # nothing is written while a part predicts: timed kills, then one as its file is written
    for ready in (after(0.6 * took), after(0.9 * took), lambda: any(parts.glob(".part1.*.tmp"))):
        killed.append(kill_when(part1, ready, threads=1, must_kill=False))
        check_part(parts / "part1.h5")
        (parts / "part1.h5").unlink(missing_ok=True)  # the next kill finds it to do again
    assert any(killed), f"part 1 ({took:.1f} s) ended before every kill point"
    must(run_py(*part1, threads=1))
    # a merge that ends before its done-marker must leave the parts for the rerun
    kill_when(merge, lambda: any(out.glob(".*.tmp")) or (out / "oof.h5").exists(),
              must_kill=False)  # fmt: skip
    assert (parts / "part1.h5").exists() and (parts / "part2.h5").exists()
    crash_after("sed.bin.infer", "os.replace", "test.h5", 1, *merge[2:])
    assert (parts / "part1.h5").exists() and (parts / "part2.h5").exists()
    must(run_py(*merge))
    assert_same_files(s.exp / "infer" / "best", out, OUTPUTS_3)
    assert not parts.exists() or not list(parts.glob("part*.h5")), "merged parts are removed"


def test_kill_during_single_job_inference(setup: Setup) -> None:
    s = setup
    expdir = copy_models(s, s.tmp / "exp_infer1")
    out = expdir / "infer" / "best"
    args = infer_args(s, expdir, None)
    kill_when(args, lambda: any(out.glob(".*.tmp")) or (out / "oof.h5").exists(), threads=1,
              must_kill=False)  # fmt: skip
    for name in ("oof.h5", "test.h5"):
        if (out / name).exists():
            h5_arrays(out / name)  # whole: it opens and reads
    must(run_py(*args, threads=1))
    assert_same_files(s.exp / "infer" / "best", out, OUTPUTS_3)


# ---------------------------------------------------------------------------------------- stage 4
def test_kill_during_submission(setup: Setup) -> None:
    s = setup
    expdir = s.tmp / "exp_submit"
    shutil.copytree(s.exp, expdir, ignore=shutil.ignore_patterns("submission.csv", "events_*",
                                                                  "thresholds.json"))  # fmt: skip
    ref, out = s.exp / "infer" / "best", expdir / "infer" / "best"
    args = logged_command(ref / "submit.log", expdir=str(expdir))
    names = ["submission.csv", "thresholds.json", "events_test/detections.csv",
             "events_oof/detections.csv"]  # fmt: skip
    names += [p.relative_to(ref).as_posix() for p in ref.glob("events_*/scores/*.tsv")]
    names += [p.relative_to(ref).as_posix() for p in ref.glob("events_*/raven/*.txt")]

    kill_when(args, lambda: (out / "submission.csv").exists() or any(out.glob(".*.tmp")),
              must_kill=False)  # fmt: skip
    if (out / "submission.csv").exists():
        assert filecmp.cmp(ref / "submission.csv", out / "submission.csv", shallow=False)
    crash_after("sed.bin.submit", "os.replace", "thresholds.json", 1, *args[2:])
    must(run_py(*args))
    assert_same_files(ref, out, names)


# ---------------------------------------------------------------------- failing tasks (run.sh)
def test_failing_fold_is_reported_and_finished_folds_are_reused(setup: Setup) -> None:
    s = setup
    common = ["--datadir", str(s.raw), "--conf", str(s.conf), "--workdir", str(s.work),
              "--tag", "failing", "--stage", "2", "--stop_stage", "2"]  # fmt: skip
    exp = s.work / "exp" / "rfcx" / "cnn" / "faults_failing"
    # fold 0 as a run killed after its last checkpoint left it (its task then only finishes),
    # to save a training; fold 1 cannot write its checkpoints: a file stands where they go
    shutil.copytree(s.exp / "fold0", exp / "fold0", ignore=shutil.ignore_patterns(".done"))
    blocker = exp / "fold1" / "checkpoints"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder\n")
    proc = run_sh(*common)
    assert proc.returncode != 0
    fold1_log = exp / "fold1" / "train.log"
    assert f"see {fold1_log}" in proc.stderr, proc.stderr[-2000:]
    assert "# Ended (code 0)" not in fold1_log.read_text()
    assert (exp / "fold0" / ".done").exists() and not (exp / "fold1" / ".done").exists()
    kept = {p: p.stat().st_mtime_ns for p in (exp / "fold0" / "checkpoints").glob("*.pt")}
    assert {p.name for p in kept} >= {"best.pt", "last.pt"}

    blocker.unlink()
    proc = must(run_sh(*common))
    assert "fold 0 is trained" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in kept} == kept, "fold 0 was trained again"
    assert (exp / "fold1" / ".done").exists()
    # the fold trained by the rerun is the one an uninterrupted run trains
    assert_same_training(s.exp / "fold1" / "checkpoints", exp / "fold1" / "checkpoints")


def test_failing_inference_part_is_reported_and_finished_parts_are_reused(setup: Setup) -> None:
    s = setup
    tag = "failing_infer"
    exp = s.work / "exp" / "rfcx" / "cnn" / f"faults_{tag}"
    copy_models(s, exp)
    common = ["--datadir", str(s.raw), "--conf", str(s.conf), "--workdir", str(s.work),
              "--tag", tag, "--stage", "3", "--stop_stage", "3", "--nj", "2"]  # fmt: skip
    out = exp / "infer" / "best"
    # part 2 cannot be written: a folder stands where its file must go
    blocker = out / "parts" / "part2.h5"
    blocker.mkdir(parents=True)
    proc = run_sh(*common)
    assert proc.returncode != 0
    assert f"see {out / 'infer.2.log'}" in proc.stderr, proc.stderr[-2000:]
    assert (out / "parts" / "part1.h5").exists() and not (out / ".done").exists()
    blocker.rmdir()
    must(run_sh(*common))
    assert_same_files(s.exp / "infer" / "best", out, OUTPUTS_3)
    assert (out / ".done").exists()
    # the finished share was reused, not predicted again: its task only checked its inputs
    assert "part 1 of 2 is complete (same models and data): reused" in (
        out / "infer.1.log"
    ).read_text()
    assert "reused" not in (out / "infer.2.log").read_text()


def test_a_share_is_reused_only_with_the_same_inputs(tmp_path: Path) -> None:
    import numpy as np

    from sed.infer.experiment import Predictions, merge_parts, part_is_current, save_part

    inputs = {"part": 1, "nparts": 2, "checkpoints": {"0": [10, 1]}, "manifests": "ab"}
    pred = Predictions()
    pred.attrs = {"classes": ["a"]}
    pred.oof["r1"] = {"clip": np.zeros(1)}
    pred.oof_fold["r1"] = 0
    save_part(pred, tmp_path / "part1.h5", inputs)
    assert part_is_current(tmp_path / "part1.h5", inputs)
    assert not part_is_current(tmp_path / "part1.h5", inputs | {"checkpoints": {"0": [10, 2]}})
    assert not part_is_current(tmp_path / "part2.h5", inputs)
    (tmp_path / "bad.h5").write_bytes(b"half a file")
    assert not part_is_current(tmp_path / "bad.h5", inputs)
    # a share of another model (retrained fold) is never merged with this one
    other = Predictions()
    other.attrs = pred.attrs
    other.oof["r2"] = {"clip": np.ones(1)}
    other.oof_fold["r2"] = 1
    save_part(other, tmp_path / "part2.h5", inputs | {"part": 2, "checkpoints": {"0": [9, 9]}})
    with pytest.raises(ValueError, match="other models, data or split"):
        merge_parts([tmp_path / "part1.h5", tmp_path / "part2.h5"])
    save_part(other, tmp_path / "part2.h5", inputs | {"part": 2})
    assert sorted(merge_parts([tmp_path / "part1.h5", tmp_path / "part2.h5"]).oof) == ["r1", "r2"]
