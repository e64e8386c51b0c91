"""The README's promises to a newcomer, and CI running what the README says."""

from __future__ import annotations

import re

from tests.support import ROOT


def _readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", readme)


def test_the_readme_gives_exactly_two_setup_commands() -> None:
    commands = _readme_commands()
    assert len(commands) == 2, commands
    assert all("python3 -m venv .venv" in c and "pip install" in c for c in commands)


def test_ci_runs_the_readme_test_command() -> None:
    test_command = _readme_commands()[1]
    assert "pytest" in test_command
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines
    assert "set -euo pipefail" in ci_lines


def test_the_schema_check_names_the_migrations_head() -> None:
    from alembic.script import ScriptDirectory

    from projections.migrate import HEAD, alembic_config

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD
