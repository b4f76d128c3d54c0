"""The command line and the README: the quick-start demo runs, reproduces from its seed, and the README example
runs as written."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tinygrad_nb import cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _run_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The runs that demo and train record go to a temporary store, not ./.tinygrad_nb in the repository."""
    path = tmp_path / "runs.db"
    monkeypatch.setenv("TINYGRAD_NB_RUNS_DB", str(path))
    return path


def run_demo(capsys: pytest.CaptureFixture[str], *extra: str) -> list[str]:
    assert cli.main(["demo", "--epochs", "3", *extra]) == 0
    return capsys.readouterr().out.splitlines()


def test_demo_trains_and_reports_progress(capsys: pytest.CaptureFixture[str]) -> None:
    lines = run_demo(capsys)
    assert lines[0] == "digits: 1437 train / 360 test images of 8x8 pixels, 10 classes"
    epochs = [line for line in lines if line.startswith("epoch")]
    assert [line.split()[1] for line in epochs] == ["1/3", "2/3", "3/3"]
    losses = [float(re.search(r"loss (\d+\.\d+)", line).group(1)) for line in epochs]
    assert losses[0] > losses[1] > losses[2]
    final = float(re.search(r"test accuracy (\d+\.\d+)%", lines[-1]).group(1))
    assert final > 85.0  # three epochs already separate the digits well


def test_demo_is_reproducible_from_its_seed(capsys: pytest.CaptureFixture[str]) -> None:
    def without_timing(lines: list[str]) -> list[str]:
        return [re.sub(r"done in [\d.]+s", "done", line) for line in lines]

    first, second = run_demo(capsys, "--seed", "3"), run_demo(capsys, "--seed", "3")
    assert without_timing(first) == without_timing(second)
    assert without_timing(run_demo(capsys, "--seed", "4")) != without_timing(first)


def test_console_script_without_a_command_prints_help() -> None:
    out = subprocess.run([sys.executable, "-m", "tinygrad_nb.cli"], capture_output=True, text=True)
    assert out.returncode == 2
    for command in ("demo", "train", "runs"):
        assert command in out.stdout


def test_readme_opens_with_the_two_commands_that_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1).strip().splitlines()
    assert first_block == ['pip install -e . && tinygrad-nb demo', 'pip install -e ".[dev]" && python -m pytest']
    assert first_block[1] in (ROOT / ".ci" / "run").read_text()


def test_readme_example_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    example = re.search(r"## Fifteen lines\n\n```python\n(.*?)```", readme, re.S).group(1)
    assert len(example.strip().splitlines()) <= 16
    out = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    accuracy = float(re.search(r"accuracy (\d+\.\d+)%", out.stdout).group(1))
    assert accuracy > 90.0
    assert (tmp_path / "iris.ckpt").stat().st_size > 0


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the command expecting argparse to refuse it: status 2, no traceback; returns the error line."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(list(argv))
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--epochs", "-1", "argument --epochs: must be at least 1, got -1"),
    ("--epochs", "0", "argument --epochs: must be at least 1, got 0"),
    ("--epochs", "two", "argument --epochs: invalid int value: 'two'"),
    ("--lr", "0", "argument --lr: must be a positive number, got 0"),
    ("--lr", "nan", "argument --lr: must be a positive number, got nan"),
])
def test_demo_refuses_bad_option_values(capsys: pytest.CaptureFixture[str], option: str, value: str,
                                        message: str) -> None:
    assert usage_error(capsys, "demo", option, value) == f"tinygrad-nb demo: error: {message}"


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--val-fraction", "1.5", "argument --val-fraction: must be at least 0 and below 1, got 1.5"),
    ("--val-fraction", "1", "argument --val-fraction: must be at least 0 and below 1, got 1"),
    ("--val-fraction", "-0.1", "argument --val-fraction: must be at least 0 and below 1, got -0.1"),
    ("--batch-size", "0", "argument --batch-size: must be at least 1, got 0"),
    ("--epochs", "-1", "argument --epochs: must be at least 1, got -1"),
    ("--hidden", "0", "argument --hidden: must be at least 1, got 0"),
    ("--lr", "-0.1", "argument --lr: must be a positive number, got -0.1"),
])
def test_train_refuses_bad_option_values(capsys: pytest.CaptureFixture[str], option: str, value: str,
                                         message: str) -> None:
    iris = str(ROOT / "tinygrad_nb" / "datasets" / "iris.csv")
    error = usage_error(capsys, "train", iris, "--target", "species", option, value)
    assert error == f"tinygrad-nb train: error: {message}"


def test_train_refuses_missing_and_fill_together(capsys: pytest.CaptureFixture[str]) -> None:
    error = usage_error(capsys, "train", "x.csv", "--target", "y", "--missing", "mean", "--fill", "0")
    assert error == "tinygrad-nb train: error: argument --fill: not allowed with argument --missing"


def test_help_shows_the_seed_default(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("demo", "train"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--help"])
        assert exit_info.value.code == 0
        help_text = " ".join(capsys.readouterr().out.split())
        assert "--seed SEED seed for the split, initialisation and shuffling (default 0)" in help_text


def test_demo_and_train_runs_are_listed_by_runs_ls(capsys: pytest.CaptureFixture[str]) -> None:
    from tinygrad_nb import track

    assert cli.main(["demo", "--epochs", "2"]) == 0
    iris = str(ROOT / "tinygrad_nb" / "datasets" / "iris.csv")
    assert cli.main(["train", iris, "--target", "species", "--epochs", "2", "--seed", "5"]) == 0
    capsys.readouterr()
    assert cli.main(["runs", "ls"]) == 0
    rows = [line.split()[1:-3] for line in capsys.readouterr().out.splitlines()[2:]]  # without id, start, duration
    assert rows == [["train", "iris.csv", "-", "finished"], ["demo", "digits", "finished"]]  # name, project, status
    train_run, demo_run = track.runs()
    assert demo_run.config == {"epochs": 2, "seed": 0, "lr": 3e-3}
    assert train_run.config["seed"] == 5 and train_run.config["task"] == "classification"
    store = track.RunStore(None)
    steps, losses = store.series(demo_run.id, "loss")[:2]
    assert steps.tolist() == [1, 2] and losses[1] < losses[0]
    assert store.series(train_run.id, "val_acc")[0].tolist() == [1, 2]
