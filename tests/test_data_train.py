"""``tinygrad-nb train``: classification and regression end to end, and clean errors (exit code 2)."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from tinygrad_nb import cli, datasets
from tinygrad_nb.data import train

PACKAGE_DATA = Path(datasets.__file__).parent


@pytest.fixture(autouse=True)
def _run_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each training run is recorded; into a temporary store, not ./.tinygrad_nb in the repository."""
    monkeypatch.setenv("TINYGRAD_NB_RUNS_DB", str(tmp_path / "runs.db"))


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


def test_train_error_hints_name_command_line_options(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("age,height,label\n30,1.8,a\n,1.6,b\n41,1.7,a\n")
    code, out, err = run_train(capsys, str(path), "--target", "label")
    assert code == 2 and out == ""
    assert err == (f'error: {path}:3: column "age": missing value "" (use --missing drop_row, --missing mean or '
                   "--fill VALUE to accept missing values)\n")
    code, _, err = run_train(capsys, str(path), "--target", "height", "--task", "classification", "--fill", "0")
    assert code == 2
    assert err == ("error: target column 'height' is float; classification needs class labels (pass --task "
                   "regression)\n")


def test_train_fill_replaces_missing_values(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    rows = [f"{20 + i},{'' if i % 4 == 0 else 1.5 + i / 100},{'ab'[i % 2]}" for i in range(20)]
    path.write_text("age,height,label\n" + "\n".join(rows) + "\n")
    code, out, err = run_train(capsys, str(path), "--target", "label", "--fill", "0", "--epochs", "1")
    assert code == 0 and err == ""
    assert "20 rows, 2 features -> label (2 classes: a, b; classification); 16 train / 4 validation rows" in out
    code, _, err = run_train(capsys, str(path), "--target", "label", "--fill", "none")
    assert code == 2 and err == "error: read_csv: fill value 'none' does not fit column 'height' (float)\n"


def test_train_without_validation_rows_reports_training_metrics_only(capsys: pytest.CaptureFixture[str]) -> None:
    iris = str(PACKAGE_DATA / "iris.csv")
    code, out, _ = run_train(capsys, iris, "--target", "species", "--epochs", "2", "--val-fraction", "0")
    lines = out.splitlines()
    assert code == 0 and lines[0].endswith("; 150 rows, none held out for validation")
    assert re.fullmatch(r"epoch +2/2  loss \d\.\d{4}  train acc +\d+\.\d\d%", lines[2])
    assert re.fullmatch(r"final: train accuracy \d+\.\d\d% \(150 rows\); no rows were held out for validation",
                        lines[-1])
    assert "val" not in out.replace("validation", "")
    diabetes = str(PACKAGE_DATA / "diabetes.csv")
    code, out, _ = run_train(capsys, diabetes, "--target", "progression", "--epochs", "1", "--val-fraction", "0")
    assert code == 0 and re.fullmatch(r"epoch +1/1  loss \d+\.\d{4}  train RMSE [\d.]+  train R² -?\d\.\d{3}",
                                      out.splitlines()[1])
    assert re.fullmatch(r"final: train RMSE [\d.]+  train R² -?\d\.\d{3} \(442 rows\); no rows were held out for "
                        r"validation", out.splitlines()[-1])


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


def test_bundled_text_is_the_shipped_file_and_unknown_names_are_refused() -> None:
    shakespeare = datasets.text("shakespeare")
    assert shakespeare == (PACKAGE_DATA / "shakespeare.txt").read_bytes().decode("utf-8")
    assert shakespeare.startswith("First Citizen:\n") and shakespeare.endswith("\n")
    assert len(set(shakespeare)) == 62  # the character vocabulary a char-level model gets
    with pytest.raises(ValueError, match="unknown text 'tolstoy'; choose one of shakespeare"):
        datasets.text("tolstoy")
