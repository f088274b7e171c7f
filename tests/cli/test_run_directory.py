"""Every file tfcraft writes in a run directory is atomic; bundled configs are package data."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import matplotlib.figure
import numpy as np
import pytest

import tfcraft._io
from tfcraft.config import bundled_config, bundled_configs, load_config, resolve_config_path
from tfcraft.reports import build_report, plots
from tfcraft.runs import RunDirectory, save_model_atomic, save_npz_atomic

ROOT = Path(__file__).resolve().parents[2]


def _files(folder):
    return sorted(p.name for p in Path(folder).iterdir())


def _tiny_model(units):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(units)])
    model.build((None, 3))
    return model


def test_failed_model_save_leaves_the_previous_model_keras(tmp_path, monkeypatch):
    save_model_atomic(_tiny_model(2), tmp_path / "model.keras")
    before = (tmp_path / "model.keras").read_bytes()
    newer = _tiny_model(5)

    def half_written(path, *args, **kwargs):
        Path(path).write_bytes(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(newer, "save", half_written)
    with pytest.raises(OSError, match="disk full"):
        save_model_atomic(newer, tmp_path / "model.keras")
    assert (tmp_path / "model.keras").read_bytes() == before
    assert _files(tmp_path) == ["model.keras"]  # no temporary file left behind
    assert keras.saving.load_model(tmp_path / "model.keras").layers[-1].units == 2


def test_failed_report_results_and_config_writes_leave_the_previous_files(tmp_path, monkeypatch):
    with RunDirectory.open(tmp_path) as run:
        run.write_json("results.json", {"title": "old", "metrics": {"rmse": float("nan")}})
        assert run.read_json("results.json")["metrics"]["rmse"] is None  # strict JSON
        build_report(tmp_path)
        run.write_config(load_config("configs/bnn_regression.yaml"), 0)
        before = {n: (tmp_path / n).read_bytes() for n in ("results.json", "report.html")}
        before["config.yaml"] = (tmp_path / "config.yaml").read_bytes()

        def no_space(fd):
            raise OSError("no space left on device")

        monkeypatch.setattr(tfcraft._io.os, "fsync", no_space)  # fails after the text is written
        with pytest.raises(OSError, match="no space"):
            run.write_json("results.json", {"title": "new", "metrics": {}})
        with pytest.raises(OSError, match="no space"):
            build_report(tmp_path)
        with pytest.raises(OSError, match="no space"):
            run.write_config(load_config("configs/bnn_regression.yaml"), 1)
        monkeypatch.undo()
        for name, content in before.items():
            assert (tmp_path / name).read_bytes() == content, name
        assert _files(tmp_path) == [".lock", "config.yaml", "report.html", "results.json"]


def test_failed_plot_and_npz_writes_leave_the_previous_files(tmp_path, monkeypatch):
    rows = [{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.5}]
    png = plots.learning_curves(rows, tmp_path)
    save_npz_atomic(tmp_path / "evaluation.npz", y=np.arange(3.0))
    before = png.read_bytes(), (tmp_path / "evaluation.npz").read_bytes()

    def broken_savefig(self, path, *args, **kwargs):
        Path(path).write_bytes(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        plots.learning_curves([*rows, {"epoch": 2, "loss": 0.2}], tmp_path)

    def broken_savez(path, **arrays):
        Path(path).write_bytes(b"PK half")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save_npz_atomic(tmp_path / "evaluation.npz", y=np.zeros(3))
    monkeypatch.undo()
    assert (png.read_bytes(), (tmp_path / "evaluation.npz").read_bytes()) == before
    assert _files(tmp_path) == ["evaluation.npz", "learning_curves.png"]
    np.testing.assert_array_equal(np.load(tmp_path / "evaluation.npz")["y"], np.arange(3.0))


def test_bundled_configs_resolve_by_name_and_match_the_repository_folder():
    assert bundled_configs() == sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))
    for name in bundled_configs():
        assert bundled_config(name).read_text() == (ROOT / "configs" / f"{name}.yaml").read_text()
    assert resolve_config_path("bnn_regression") == bundled_config("bnn_regression")
    assert resolve_config_path("elsewhere/bnn_regression") == Path("elsewhere/bnn_regression")
    assert load_config("rl_cartpole", "rl").env == "CartPole-v1"


@pytest.mark.timeout(300)
def test_the_wheel_ships_the_bundled_configs(tmp_path):
    source = tmp_path / "source"  # a copy, so the build leaves the working tree untouched
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    completed = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(tmp_path / "dist")],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("tfcraft-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n for n in names if n.startswith("tfcraft/configs/"))
    assert shipped == [f"tfcraft/configs/{name}.yaml" for name in bundled_configs()]
    # The demo reads its configs from the package, not from a source tree.
    demo_source = zipfile.ZipFile(wheel).read("tfcraft/cli/demo.py").decode()
    assert "bundled_config(name)" in demo_source and "parents[" not in demo_source
