"""``tinygrad-nb train``: classification and regression end to end, and clean errors (exit code 2)."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from tinygrad_nb import cli, datasets
from tinygrad_nb.data import train

PACKAGE_DATA = Path(datasets.__file__).parent


def run_train(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    code = train.main(parser.parse_args(list(argv)))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_classifier_on_iris(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_train(capsys, str(PACKAGE_DATA / "iris.csv"), "--target", "species", "--epochs", "3",
                               "--seed", "1")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert "150 rows, 4 features -> species (3 classes: setosa, versicolor, virginica; classification)" in lines[0]
    assert "120 train / 30 validation rows" in lines[0]
    epochs = [line for line in lines if line.startswith("epoch")]
    assert len(epochs) == 3
    assert re.fullmatch(r"epoch +3/3  loss \d\.\d{4}  train acc +\d+\.\d\d%  val acc +\d+\.\d\d%", epochs[-1])
    final = re.fullmatch(r"final: val accuracy (\d+\.\d\d)% \(30 rows\), train accuracy (\d+\.\d\d)% \(120 rows\)",
                         lines[-1])
    assert final and float(final.group(1)) > 50.0  # three epochs are already far above chance (33%)


def test_train_regressor_on_diabetes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_train(capsys, str(PACKAGE_DATA / "diabetes.csv"), "--target", "progression",
                             "--epochs", "2", "--batch-size", "64", "--hidden", "16")
    assert code == 0
    lines = out.splitlines()
    assert "442 rows, 10 features -> progression (int; regression); 354 train / 88 validation rows" in lines[0]
    assert re.fullmatch(r"epoch +2/2  loss \d+\.\d{4}  val RMSE [\d.]+  val R² -?\d\.\d{3}", lines[2])
    assert re.fullmatch(r"final: val RMSE [\d.]+  val R² -?\d\.\d{3} \(88 rows\), train RMSE [\d.]+  train R² "
                        r"-?\d\.\d{3} \(354 rows\)", lines[-1])


def test_train_is_deterministic(capsys: pytest.CaptureFixture[str]) -> None:
    args = (str(PACKAGE_DATA / "iris.csv"), "--target", "species", "--epochs", "2")
    first = [line for line in run_train(capsys, *args)[1].splitlines() if not line.startswith("trained")]
    second = [line for line in run_train(capsys, *args)[1].splitlines() if not line.startswith("trained")]
    assert first == second


def test_train_reports_bad_csv_without_traceback(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("x,y\n1,a\n2,b\n3,c\nzz,a\n")
    code, out, err = run_train(capsys, str(path), "--target", "y")
    assert code == 2 and out == ""
    assert err == f'error: {path}:5: column "x": "zz" is not a number (column inferred as int from rows 2-4)\n'
    code, _, err = run_train(capsys, str(path), "--target", "why")
    assert code == 2 and 'target column "why" not found' in err
    code, _, err = run_train(capsys, str(tmp_path / "nope.csv"), "--target", "y")
    assert code == 2 and err == f"error: {tmp_path / 'nope.csv'}: no such file\n"


def test_train_is_a_cli_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["train", str(PACKAGE_DATA / "iris.csv"), "--target", "species", "--epochs", "1"])
    assert code == 0 and "final: val accuracy" in capsys.readouterr().out


def test_bundled_datasets_load() -> None:
    shapes = {name: (datasets.load(name).num_rows, datasets.load(name).target) for name in datasets.names()}
    assert shapes == {"iris": (150, "species"), "digits": (1797, "digit"), "diabetes": (442, "progression"),
                      "sequences": (400, "label")}
    assert datasets.load("digits").to_tensors()[0].shape == (1797, 64)
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        datasets.load("mnist")
