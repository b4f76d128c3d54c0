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
