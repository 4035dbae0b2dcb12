"""Fault injection on runs: every kind of file a run holds, damaged; a training process killed outright; two runs
started at once in one runs root. Each case ends in a clean error naming the file (and nothing rewritten) or in a
correct result, never in a silently different number."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prerec_pyro.cli import load_script

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
TINY = ["--benchmark", "synthetic-small", "--text-model", "hash-bow-32", "--max-len", "8", "--valid-max-users", "10"]
DAMAGES = {"truncate": lambda data: data[: len(data) // 2], "garbage": lambda data: b"\x00not a run file" * 7,
           "empty": lambda data: b""}


def script(name):
    return load_script(SCRIPTS / f"{name}.py")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREREC_CACHE_DIR", str(root / "cache"))
        pretrain = script("map_pretrain")
        yield pretrain.main(pretrain.parse_args([*TINY, "--epochs", "1", "--runs", str(root / "runs")]))


def damaged_copy(run_dir: Path, tmp_path: Path, name: str, damage: str) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    target = copy / name
    target.write_bytes(DAMAGES[damage](target.read_bytes()))
    return copy


def evaluate(run_dir: Path, tmp_path: Path):
    evaluation = script("intervene_eval")
    return evaluation.main(evaluation.parse_args(["--benchmark", "synthetic-small", "--run", str(run_dir), "--target",
                                                  "japan", "--n-boot", "10", "--out", str(tmp_path / "eval")]))


@pytest.mark.parametrize("damage", sorted(DAMAGES))
@pytest.mark.parametrize("name", ["best.pt", "config.json", "state.json"])
def test_evaluating_a_run_with_a_damaged_file_names_the_file(finished_run, tmp_path, name, damage):
    copy = damaged_copy(finished_run, tmp_path, name, damage)
    with pytest.raises(ValueError, match=rf"{name.replace('.', '[.]')}"):
        evaluate(copy, tmp_path)


@pytest.mark.parametrize("damage", sorted(DAMAGES))
@pytest.mark.parametrize("name", ["last.pt", "config.json"])
def test_resuming_from_a_damaged_file_names_it_and_rewrites_nothing(finished_run, tmp_path, name, damage):
    copy = damaged_copy(finished_run, tmp_path, name, damage)
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    pretrain = script("map_pretrain")
    with pytest.raises(ValueError, match=rf"{name.replace('.', '[.]')}"):
        pretrain.main(pretrain.parse_args(["--resume", str(copy), "--epochs", "2"]))
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == before, "a failed resume changed the run"


def _train(runs: Path, env: dict, epochs: int = 50) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(SCRIPTS / "map_pretrain.py"), *TINY, "--epochs", str(epochs),
                             "--patience", str(epochs), "--runs", str(runs)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_killed_training_is_never_read_as_finished_and_resumes(tmp_path):
    """SIGKILL (no handler runs) after the first checkpoint: state.json still says 'running', but its owner is dead,
    so consumers read it as interrupted and refuse it with the resume command, and --resume finishes it."""
    env = {**os.environ, "PREREC_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    runs = tmp_path / "runs"
    process = _train(runs, env)
    deadline = time.monotonic() + 120
    while not list(runs.glob("*/*/last.pt")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    [run_dir] = runs.glob("*/*")
    assert json.loads((run_dir / "state.json").read_text())["state"] == "running"
    with pytest.raises(ValueError, match=rf"the run is interrupted, not finished.*--resume {run_dir}"):  # owner dead
        evaluate(run_dir, tmp_path)
    resumed = subprocess.run([sys.executable, str(SCRIPTS / "map_pretrain.py"), "--resume", str(run_dir), "--epochs",
                              "2"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run_dir / "state.json").read_text())["state"] == "finished"


def test_two_runs_started_at_once_in_one_root_keep_their_own_directories(tmp_path):
    """The same command twice, concurrently: two directories (never one shared), both finished, and the same
    numbers (same seed, same data)."""
    env = {**os.environ, "PREREC_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    runs = tmp_path / "runs"
    processes = [_train(runs, env, epochs=1) for _ in range(2)]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-2000:]
    run_dirs = sorted(runs.glob("*/*"))
    assert len(run_dirs) == 2
    metrics = [json.loads((d / "metrics.json").read_text())["valid"] for d in run_dirs]
    assert metrics[0] == metrics[1]
    for run_dir in run_dirs:
        assert json.loads((run_dir / "state.json").read_text())["state"] == "finished"
        assert not list(run_dir.glob(".*.tmp"))


@pytest.mark.parametrize("error", [(28, "No space left on device"), (13, "Permission denied")])
def test_a_checkpoint_that_cannot_be_written_stops_the_run_marked_failed_naming_the_file(tmp_path, monkeypatch,
                                                                                       error):
    """A full disk or a read-only folder (a patched writer: root writes through permissions) while training: one
    ValueError naming the file, the run marked failed with the reason, and --resume continues it afterwards."""
    from prerec_pyro.inference import checkpoint
    from prerec_pyro.inference.runs import load_json, run_state

    monkeypatch.setenv("PREREC_CACHE_DIR", str(tmp_path / "cache"))
    real = checkpoint.atomic_write

    def failing(path, write):
        if Path(path).name == "last.pt":
            raise OSError(error[0], error[1], str(path))
        return real(path, write)

    monkeypatch.setattr(checkpoint, "atomic_write", failing)
    pretrain = script("map_pretrain")
    with pytest.raises(ValueError, match=rf"last[.]pt: {error[1]}; the run stopped \(marked failed\)"):
        pretrain.main(pretrain.parse_args([*TINY, "--epochs", "2", "--runs", str(tmp_path / "runs")]))
    [run_dir] = (tmp_path / "runs" / "synthetic-small").iterdir()
    assert run_state(run_dir) == "failed" and error[1] in load_json(run_dir / "state.json")["reason"]
    monkeypatch.setattr(checkpoint, "atomic_write", real)
    with pytest.raises(ValueError, match="the run is failed, not finished; continue it with"):
        evaluate(run_dir, tmp_path)
    with pytest.raises(ValueError, match=r"last[.]pt: checkpoint not found"):  # no epoch was saved: start again
        pretrain.main(pretrain.parse_args(["--resume", str(run_dir)]))


def test_one_owner_per_run_a_live_trainer_is_not_joined_a_dead_ones_run_is_resumable(finished_run, tmp_path):
    from prerec_pyro.inference.runs import run_state, save_json

    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        save_json(copy / "state.json", {"state": "running", "owner": {"pid": sleeper.pid, "host": os.uname()[1]}})
        pretrain = script("map_pretrain")
        with pytest.raises(ValueError, match=rf"is being trained by process {sleeper.pid} on"):
            pretrain.main(pretrain.parse_args(["--resume", str(copy)]))
        with pytest.raises(ValueError, match="still being trained by process"):
            evaluate(copy, tmp_path)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert run_state(copy) == "interrupted"  # its owner is gone: resumable
    with pytest.raises(ValueError, match="no such run directory"):
        evaluate(tmp_path / "nowhere", tmp_path)
