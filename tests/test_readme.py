"""The README's commands are ones the project accepts: every `kedro ...` and
`python -m ...` line of its code blocks parses, and a `kedro run` line's
pipelines, environment and `--params` pass the start-up checks."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import click
import pytest
from kedro.config import OmegaConfigLoader
from kedro.framework.cli.cli import KedroCLI
from kedro.framework.project import configure_project, pipelines, settings

from book_recommender.params import check_parameters
from tests.conftest import PROJECT_ROOT

ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")


def _commands() -> list[list[str]]:
    """Each `kedro` / `python -m` command of the README's shell blocks, as
    words, environment assignments in front and comments dropped."""
    text = (PROJECT_ROOT / "README.md").read_text()
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and ASSIGNMENT.match(words[0]):
                words = words[1:]
            if words[:1] == ["kedro"] or words[:2] == ["python", "-m"]:
                found.append(words)
    return found


COMMANDS = _commands()


def test_the_readme_shows_the_main_commands():
    shown = {" ".join(words[:2]) for words in COMMANDS}
    assert {"kedro run", "kedro viz"} <= shown


def _context(words: list[str]) -> click.Context:
    """The click context `kedro <words>` gets: options parsed and converted
    (``--params`` to a dict) without running the command."""
    group = KedroCLI(project_path=PROJECT_ROOT)
    args = words[1:]
    name, command, rest = group.resolve_command(click.Context(group), args)
    while isinstance(command, click.Group):
        name, command, rest = command.resolve_command(click.Context(command), rest)
    return command.make_context(name, rest)


@pytest.mark.parametrize("words", COMMANDS, ids=[" ".join(w) for w in COMMANDS])
def test_a_readme_command_parses(words):
    if words[0] == "python":
        done = subprocess.run(  # noqa: S603
            [sys.executable, *words[1:3], "--help"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return
    context = _context(words)
    if words[1] != "run":
        return
    configure_project("book_recommender")
    named = context.params.get("pipelines") or context.params.get("pipeline") or []
    if isinstance(named, str):  # the deprecated --pipeline: comma-separated names
        named = named.split(",")
    for name in named:
        assert name in pipelines, f"{' '.join(words)}: no pipeline {name!r}"
    env = context.params.get("env") or "local"
    loader = OmegaConfigLoader(
        str(PROJECT_ROOT / "conf"),
        env=env,
        runtime_params=context.params.get("params") or {},
        **settings.CONFIG_LOADER_ARGS,
    )
    check_parameters(loader["parameters"], env)
