"""Failed writes: a full disk, a permission error, a read-only folder.

Some are real (a 256 KiB tmpfs filled by the checkpoints, a tmpfs remounted
read-only), skipped where the machine cannot mount; the others patch the writer
to raise the `OSError` the kernel would (ENOSPC from `fsync`, EACCES from
`rename`). Each error names the path, and the previous checkpoint, model file,
detector folder, ensemble folder and report stay intact and loadable.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import keras
import numpy as np
import pytest

from tfcraft._io import write_text_atomic
from tfcraft.training import Trainer
from tfcraft.training.resume import TrainingCheckpoints


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 3)).astype("float32")
    return x, (x[:, :1] * 2).astype("float32")


def make_trainer(directory, units=8, **kwargs):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(units, activation="relu"), keras.layers.Dense(1)]
    )
    return Trainer(model, "adam", loss="mse", seed=0, checkpoint_dir=directory, **kwargs)


def fail_fsync_for(monkeypatch, fragment, code=errno.ENOSPC):
    """`os.fsync` raises `code` for files whose path contains `fragment` (ENOSPC: disk full)."""
    fsync = os.fsync

    def failing(fd):
        if fragment in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(code, os.strerror(code))
        return fsync(fd)

    monkeypatch.setattr(os, "fsync", failing)


def fail_replace_to(monkeypatch, fragment):
    """`os.replace` onto a path containing `fragment` raises EACCES, as the kernel would."""
    replace = os.replace

    def failing(src, dst, *args, **kwargs):
        if fragment in str(dst):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(src), None, str(dst))
        return replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", failing)


def no_temporaries(folder: Path) -> None:
    leftovers = [p.name for p in folder.rglob("*") if ".tmp" in p.name or ".partial" in p.name]
    assert not leftovers, leftovers


def resume_and_finish(directory, epochs=2):
    trainer = make_trainer(directory, checkpoint_every=2)
    trainer.fit(data(), epochs=epochs, batch_size=8, resume=True, verbose=0)
    return trainer


@pytest.fixture
def tmpfs(tmp_path):
    """A real 256 KiB tmpfs (root with CAP_SYS_ADMIN only), unmounted afterwards."""
    mount = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)])
    if done.returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.fault("failed-write")
def test_checkpoint_sidecar_on_a_full_disk(tmp_path, monkeypatch):
    reference = make_trainer(tmp_path / "reference", checkpoint_every=2)
    reference.fit(data(), epochs=2, batch_size=8, verbose=0)
    fail_fsync_for(monkeypatch, "ckpt-4.json")
    trainer = make_trainer(tmp_path / "run", checkpoint_every=2)
    with pytest.raises(OSError, match=r"No space left on device: '.*ckpt-4\.json'"):
        trainer.fit(data(), epochs=2, batch_size=8, verbose=0)
    monkeypatch.undo()
    no_temporaries(tmp_path / "run")
    assert TrainingCheckpoints(tmp_path / "run").latest_metadata()["step"] == 2
    resumed = resume_and_finish(tmp_path / "run")  # the disk has room again: nothing lost
    for a, b in zip(reference.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.fault("failed-write")
def test_checkpoint_data_files_on_a_real_full_disk(tmpfs, tmp_path):
    # 1500 units: a checkpoint (weights + two Adam slots) is 90 KB; the third cannot fit.
    trainer = make_trainer(tmpfs / "ckpt", units=1500, checkpoint_every=2, max_to_keep=3)
    with pytest.raises(OSError, match=r"Could not write checkpoint .*ckpt-\d+ .*is intact"):
        trainer.fit(data(), epochs=2, batch_size=8, verbose=0)
    metadata = TrainingCheckpoints(tmpfs / "ckpt").latest_metadata()
    assert metadata["step"] == 4 and trainer.step == 6
    assert sorted(p.name for p in (tmpfs / "ckpt").iterdir() if "_temp" in p.name) == []
    # Moved to a disk with room, the run resumes from step 4 and finishes.
    shutil.copytree(tmpfs / "ckpt", tmp_path / "moved")
    (tmp_path / "moved" / ".lock").unlink()
    restored = make_trainer(tmp_path / "moved", units=1500, checkpoint_every=2)
    restored.fit(data(), epochs=2, batch_size=8, resume=True, verbose=0)
    reference = make_trainer(tmp_path / "reference", units=1500, checkpoint_every=2)
    reference.fit(data(), epochs=2, batch_size=8, verbose=0)
    for a, b in zip(reference.get_weights(), restored.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.fault("failed-write")
def test_read_only_folder_is_refused_with_its_path(tmpfs, tmp_path):
    (tmpfs / "ckpt").mkdir()
    write_text_atomic(tmpfs / "report.html", "old report")
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    with pytest.raises(OSError, match=r"Read-only file system: '.*ckpt/\.lock'"):
        make_trainer(tmpfs / "ckpt").fit(data(), batch_size=8, verbose=0)
    with pytest.raises(OSError, match=r"Read-only file system: '.*report\.html"):
        write_text_atomic(tmpfs / "report.html", "new report")
    assert (tmpfs / "report.html").read_text() == "old report"


@pytest.mark.fault("failed-write")
def test_model_file_permission_denied_keeps_the_old_model(tmp_path, monkeypatch):
    from tfcraft.runs import save_model_atomic

    model = make_trainer(None).model
    save_model_atomic(model, tmp_path / "model.keras")
    before = [w.copy() for w in model.get_weights()]
    model.layers[0].kernel.assign(np.zeros_like(before[0]))
    fail_replace_to(monkeypatch, "model.keras")
    with pytest.raises(PermissionError, match=r"Permission denied: .*model\.keras"):
        save_model_atomic(model, tmp_path / "model.keras")
    monkeypatch.undo()
    no_temporaries(tmp_path)
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    for a, b in zip(before, loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.fault("failed-write", cases=2)
def test_detector_folder_kept_when_saving_over_it_fails(tmp_path, monkeypatch):
    from tfcraft.anomaly import GaussianMixtureDetector, load_detector

    X = np.random.default_rng(0).normal(size=(300, 3))
    old = GaussianMixtureDetector(num_components=1, seed=0).fit(X)
    old.save(tmp_path / "gmm")
    expected = old.score_samples(X[:20])
    new = GaussianMixtureDetector(num_components=2, seed=1).fit(X + 3.0)
    # Disk full while writing the weights, then permission denied on the final rename.
    with monkeypatch.context() as patch:
        patch.setattr(np, "savez", _raise_enospc)
        with pytest.raises(OSError, match="No space left"):
            new.save(tmp_path / "gmm")
    with monkeypatch.context() as patch:
        fail_replace_to(patch, "gmm")
        with pytest.raises(PermissionError, match=r"Permission denied: .*gmm"):
            new.save(tmp_path / "gmm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gmm"]  # no half folder left
    np.testing.assert_array_equal(load_detector(tmp_path / "gmm").score_samples(X[:20]), expected)


def _raise_enospc(file, *args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))


@pytest.mark.fault("failed-write")
def test_ensemble_folder_kept_when_a_member_cannot_be_written(tmp_path, monkeypatch):
    from tfcraft.bayes import DeepEnsemble

    x, y = data()

    def build(seed):
        return keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])

    ensemble = DeepEnsemble(build, num_members=2, seed=0)
    ensemble.fit(x, y, epochs=1, batch_size=8, loss="mse")
    ensemble.save(tmp_path / "ensemble")
    expected = [w.copy() for m in ensemble.members for w in m.get_weights()]
    ensemble.fit(x, y, epochs=2, batch_size=8, loss="mse")
    save = keras.Model.save
    calls = []

    def second_member_fails(self, filepath, *args, **kwargs):
        calls.append(filepath)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filepath))
        return save(self, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", second_member_fails)
    with pytest.raises(OSError, match=r"No space left on device: .*member_1\.keras"):
        ensemble.save(tmp_path / "ensemble")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ensemble"]
    loaded = DeepEnsemble.load(tmp_path / "ensemble")
    actual = [w for m in loaded.members for w in m.get_weights()]
    for a, b in zip(expected, actual, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.fault("failed-write")
def test_report_kept_when_the_disk_is_full(tmp_path, monkeypatch):
    write_text_atomic(tmp_path / "report.html", "<html>old</html>")
    fail_fsync_for(monkeypatch, "report.html")
    with pytest.raises(OSError, match=r"No space left on device: '.*report\.html'"):
        write_text_atomic(tmp_path / "report.html", "<html>new</html>")
    monkeypatch.undo()
    assert (tmp_path / "report.html").read_text() == "<html>old</html>"
    no_temporaries(tmp_path)
