"""The CLI functions for ``tinygrad-nb export`` and ``tinygrad-nb predict`` (tinygrad_nb/export/cli.py and
tinygrad_nb/runtime/cli.py; wired into tinygrad_nb.cli's subcommand table)."""
from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")

import tinygrad_nb as tg  # noqa: E402
from tinygrad_nb import nn  # noqa: E402
from tinygrad_nb.export import cli as export_cli  # noqa: E402
from tinygrad_nb.export import onnx as export_onnx  # noqa: E402
from tinygrad_nb.runtime import cli as predict_cli  # noqa: E402
from tinygrad_nb.runtime import load  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"


def parse(module: object, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)  # type: ignore[attr-defined]
    return parser.parse_args(argv)


@pytest.fixture
def model_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "cli_models.py").write_text(textwrap.dedent("""
        from tinygrad_nb import nn

        class Net(nn.Module):
            def __init__(self, hidden=8):
                super().__init__()
                self.fc1 = nn.Linear(2, hidden)
                self.fc2 = nn.Linear(hidden, 3)

            def forward(self, x):
                return self.fc2(self.fc1(x).relu()).softmax(-1)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "cli_models"


def test_export_a_checkpoint(tmp_path: Path, model_module: str, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib

    net = importlib.import_module(model_module).Net(hidden=5)
    tg.save(tmp_path / "net.ckpt", model=net)
    out = tmp_path / "net.onnx"
    code = export_cli.main(parse(export_cli, [str(tmp_path / "net.ckpt"), "--model", f"{model_module}:Net",
                                              "--to", str(out), "--kwargs", '{"hidden": 5}']))
    assert code == 0
    assert capsys.readouterr().out.endswith(f"wrote {out}: 8 nodes, opset 18, validated\n")
    x = np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32)
    with tg.no_grad():
        want = net(tg.tensor(x)).numpy()
    np.testing.assert_allclose(load(out)(x), want, rtol=1.3e-6, atol=1e-5)


def test_export_errors_are_one_line(tmp_path: Path, model_module: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = export_cli.main(parse(export_cli, [str(tmp_path / "missing.ckpt"), "--model", f"{model_module}:Nope",
                                              "--to", str(tmp_path / "x.onnx")]))
    assert code == 1
    assert capsys.readouterr().err == f"tinygrad-nb export: --model: module '{model_module}' has no 'Nope'\n"


def test_predict_a_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = nn.Sequential(nn.Linear(1, 3), nn.Softmax(dim=1))
    export_onnx(model, tg.randn(2, 1), tmp_path / "m.onnx", validate=False)
    out = tmp_path / "pred.csv"
    code = predict_cli.main(parse(predict_cli, [str(tmp_path / "m.onnx"), str(DATA / "species.csv"), "--out",
                                                str(out), "--target", "species"]))
    assert code == 0
    assert capsys.readouterr().out == f"wrote 3 predictions to {out} (sepal_length -> output)\n"
    lines = out.read_text().splitlines()
    assert lines[0] == "output_0,output_1,output_2,predicted"
    x = tg.data.read_csv(DATA / "species.csv").columns["sepal_length"].astype(np.float32).reshape(-1, 1)
    assert [line.split(",")[:3] for line in lines[1:]] == [[repr(float(v)) for v in row] for row in load(
        tmp_path / "m.onnx")(x)]


def test_predict_reports_csv_errors_with_their_location(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = nn.Linear(2, 1)
    export_onnx(model, tg.randn(2, 2), tmp_path / "m.onnx", validate=False)
    code = predict_cli.main(parse(predict_cli, [str(tmp_path / "m.onnx"), str(DATA / "bad_number.csv"), "--out",
                                                str(tmp_path / "p.csv"), "--target", "label"]))
    assert code == 1
    assert capsys.readouterr().err == (f"tinygrad-nb predict: {DATA / 'bad_number.csv'}:7: column \"y\": \"abc\" is "
                                       "not a number (column inferred as float from rows 2-6)\n")
    assert not (tmp_path / "p.csv").exists()
