"""Suite-wide collection rules.

Scripts that tests run in a fresh process (`*_script.py`, `kill_child.py`) are
not test modules: `--doctest-modules` would import them, and some must set up
TensorFlow (logical devices) before anything else imports it.
"""

collect_ignore_glob = ["*_script.py", "kill_child.py"]
