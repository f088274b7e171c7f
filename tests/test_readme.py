"""Every ```python block of README.md runs, in order, in one namespace."""

import re
from pathlib import Path

import keras
import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_the_two_commands_first():
    text = README.read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, flags=re.DOTALL).group(1)
    assert first_block.lstrip().startswith("make demo")
    assert "make test" in first_block


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    keras.utils.set_random_seed(0)
    blocks = python_blocks()
    assert len(blocks) >= 4
    namespace: dict = {}
    bnn_history = None
    for index, block in enumerate(blocks):
        try:
            exec(compile(block, f"README.md block {index}", "exec"), namespace)
        except Exception as error:  # name the block that broke
            raise AssertionError(f"README python block {index} failed: {error!r}") from error
        if "bayes.predict(bnn" in block:
            bnn_history, low, high = namespace["history"], namespace["low"], namespace["high"]
    # The tour's claims hold: KL and NLL logged, intervals ordered, checkpoint written.
    logged = bnn_history.history
    assert {"loss", "kl", "nll"} <= set(logged)
    assert np.all(np.asarray(logged["kl"]) > 0)
    np.testing.assert_allclose(
        logged["loss"], np.add(logged["nll"], logged["kl"]), rtol=1e-5, atol=1e-6
    )
    assert (low < high).all()
    assert any((tmp_path / "runs" / "readme_ckpt").iterdir())


def test_docs_examples_are_the_readmes():
    """Each docs/*.md python block also stands in README.md, where it runs (above)."""
    readme_blocks = set(python_blocks())
    for page in sorted((README.parent / "docs").glob("*.md")):
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL):
            assert block in readme_blocks, f"{page.name}: a python block is not in README.md"
