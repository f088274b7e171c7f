"""docs/cli.md's ```bash blocks are true: each line parses, its configs validate, and its
sub-command and flags are exercised by tests/cli/test_commands.py."""

import ast
import re
import shlex
from pathlib import Path

import pytest

from tfcraft.cli import build_parser
from tfcraft.cli.recipe import recipe_options
from tfcraft.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "cli.md"
TESTS = Path(__file__).with_name("test_commands.py")
# Documented flags no test runs, and why.
NOT_RUN = {"--full": "the full recipe budget takes minutes; tests run smaller ones"}


def documented_commands() -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    commands = []
    for line in "\n".join(blocks).splitlines():
        for part in line.split("#")[0].split(";"):
            words = shlex.split(part)
            if words:
                assert words[0] == "tfcraft", f"docs/cli.md runs {words[0]!r}, not tfcraft"
                commands.append(words[1:])
    return commands


def exercised() -> tuple[set[str], set[str]]:
    """Sub-commands and flags passed to `tfcraft(...)`/`main([...])` in test_commands.py."""
    commands, flags = set(), set()
    for node in ast.walk(ast.parse(TESTS.read_text())):
        if not isinstance(node, ast.Call) or getattr(node.func, "id", None) not in (
            "tfcraft",
            "main",
            "tfcraft_cmd",
        ):
            continue
        args = node.args
        if args and isinstance(args[0], ast.List):
            args = args[0].elts
        words = [a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        commands.update(w for w in words[:2] if not w.startswith("-"))
        flags.update(w for w in words if w.startswith("--"))
    for node in ast.walk(ast.parse(TESTS.read_text())):  # `args = ["train", ...]` lists
        if isinstance(node, ast.List):
            flags.update(
                e.value
                for e in node.elts
                if isinstance(e, ast.Constant) and str(e.value).startswith("--")
            )
    return commands, flags


COMMANDS = documented_commands()


def test_the_docs_show_every_command():
    named = {words[0] for words in COMMANDS if words and not words[0].startswith("-")}
    assert named == {
        "demo", "train", "evaluate", "predict", "report", "detect", "rl", "recipe"
    }  # fmt: skip
    assert ["--version"] in COMMANDS and ["--help"] in COMMANDS


@pytest.mark.parametrize("words", COMMANDS, ids=[" ".join(w) for w in COMMANDS])
def test_each_documented_command_parses_validates_and_is_tested(words):
    parser = build_parser()
    if "--help" in words or "--version" in words:
        with pytest.raises(SystemExit) as info:
            parser.parse_args(words)
        assert info.value.code == 0
    else:
        args = parser.parse_args(words)
        if args.command in ("train", "detect", "rl"):
            load_config(ROOT / args.config if "/" in str(args.config) else args.config,
                        args.command, args.overrides)  # fmt: skip
        elif args.command == "recipe":
            recipe_options(args.name, args.overrides)
    commands, flags = exercised()
    if words[0] not in ("--help", "--version"):
        assert words[0] in commands, f"no test runs `tfcraft {words[0]}`"
    for flag in (w for w in words if w.startswith("--")):
        assert flag in flags or flag in NOT_RUN or flag in ("--help", "--version"), (
            f"no test passes {flag} (docs/cli.md: tfcraft {' '.join(words)})"
        )
