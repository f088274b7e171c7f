"""save/load: identical scores, atomic folders, refusals with clear errors, no pickle."""

import json
import pickle

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

import tfcraft.anomaly.base as base
from tfcraft.anomaly import (
    Detector,
    FlowDetector,
    GaussianMixtureDetector,
    load_detector,
)


def _outputs(detector, X):
    return {
        "score_samples": detector.score_samples(X),
        "decision_function": detector.decision_function(X),
        "predict": detector.predict(X),
        "predict_proba": detector.predict_proba(X),
        "explain": detector.explain(X),
    }


def _assert_same(first, second):
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)


@pytest.fixture
def no_pickle(monkeypatch):
    """Fail the test if anything unpickles or pickles while it runs."""

    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used")

    for name in ("load", "loads", "dump", "dumps"):
        monkeypatch.setattr(pickle, name, refuse)


def test_round_trip_gives_identical_outputs(fitted_detector, normal_data, tmp_path, no_pickle):
    _, test = normal_data
    folder = tmp_path / "detector"
    fitted_detector.save(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "weights.npz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["detector"]  # no temp folder left
    with np.load(folder / "weights.npz", allow_pickle=False) as archive:
        assert all(archive[k].dtype != object for k in archive.files)
    loaded = type(fitted_detector).load(folder)
    assert type(loaded) is type(fitted_detector)
    assert repr(loaded) == repr(fitted_detector)  # the same constructor arguments
    _assert_same(_outputs(fitted_detector, test), _outputs(loaded, test))
    _assert_same(_outputs(fitted_detector, test), _outputs(load_detector(folder), test))


def test_pickle_round_trip_gives_identical_outputs(fitted_detector, normal_data):
    _, test = normal_data
    copy = pickle.loads(pickle.dumps(fitted_detector))
    _assert_same(_outputs(fitted_detector, test), _outputs(copy, test))


def test_saving_again_replaces_the_folder(fitted, normal_data, tmp_path):
    _, test = normal_data
    folder = tmp_path / "detector"
    fitted["tiny_mixture"].save(folder)
    fitted["tiny_flow"].save(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["detector"]
    np.testing.assert_array_equal(
        load_detector(folder).score_samples(test), fitted["tiny_flow"].score_samples(test)
    )


@pytest.mark.parametrize("stage", ["weights", "rename"])
def test_a_failed_save_leaves_the_old_folder_intact(
    fitted, normal_data, tmp_path, monkeypatch, stage
):
    _, test = normal_data
    folder = tmp_path / "detector"
    old = fitted["tiny_mixture"]
    old.save(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def fail(*args, **kwargs):
        raise OSError("disk full")

    if stage == "weights":
        monkeypatch.setattr(base.np, "savez", fail)
    else:
        monkeypatch.setattr(base, "replace_folder_atomic", fail)
    with pytest.raises(OSError, match="disk full"):
        fitted["tiny_flow"].save(folder)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["detector"]  # temp folder removed
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    np.testing.assert_array_equal(
        load_detector(folder).score_samples(test), old.score_samples(test)
    )


def test_load_refuses_another_detector_class(fitted, tmp_path):
    folder = tmp_path / "detector"
    fitted["tiny_mixture"].save(folder)
    with pytest.raises(ValueError, match="holds a GaussianMixtureDetector, not a FlowDetector"):
        FlowDetector.load(folder)


def test_load_refuses_another_tfcraft_version(fitted, tmp_path):
    folder = tmp_path / "detector"
    fitted["tiny_mixture"].save(folder)
    config = json.loads((folder / "config.json").read_text())
    config["tfcraft_version"] = "0.0.1"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"saved by tfcraft 0\.0\.1.*refit and save it again"):
        GaussianMixtureDetector.load(folder)
    with pytest.raises(ValueError, match=r"tfcraft_version='0\.0\.1'"):
        load_detector(folder)


def test_load_refuses_missing_corrupt_and_foreign_folders(fitted, tmp_path):
    with pytest.raises(ValueError, match=r"config\.json is missing"):
        load_detector(tmp_path / "nothing")
    folder = tmp_path / "detector"
    fitted["tiny_mixture"].save(folder)
    (folder / "weights.npz").write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="corrupt or incomplete"):
        load_detector(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        load_detector(folder)
    (folder / "config.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="is not a tfcraft detector config"):
        Detector.load(folder)


def test_save_needs_a_fitted_detector(tmp_path):
    with pytest.raises(NotFittedError):
        GaussianMixtureDetector().save(tmp_path / "detector")
    assert list(tmp_path.iterdir()) == []
