"""The house rules of ../shared/design/architecture.md, checked: imports point down the layers
(import-linter, the contracts in pyproject.toml, no ignored imports), modules stay small, and
the core loads without the web, SQL or read-side stacks."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ["ledger", "projections", "api", "service"]
MAX_MODULE_LINES = 400


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_every_import_contract_of_the_design_note_is_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_import_contracts_list_no_ignored_imports_and_cover_the_layers() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contracts = config["contracts"]
    assert all("ignore_imports" not in c for c in contracts)
    (layers,) = [c for c in contracts if c["type"] == "layers"]
    assert layers["layers"][:3] == ["api", "service", "projections"]
    forbidden = {
        c["source_modules"][0]: set(c["forbidden_modules"])
        for c in contracts
        if c["type"] == "forbidden"
    }
    assert forbidden["projections"] == {"ledger.application", "ledger.infrastructure"}
    assert {"sqlalchemy", "psycopg", "projections", "ledger.infrastructure"} <= forbidden["api"]


@pytest.mark.parametrize("package", PRODUCTION)
def test_no_production_module_is_longer_than_four_hundred_lines(package: str) -> None:
    too_long = {
        str(path.relative_to(ROOT)): n
        for path in (ROOT / package).rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert too_long == {}


def test_the_write_side_application_loads_without_web_sql_or_read_side_code() -> None:
    result = _python(
        "import sys, ledger.application\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'litestar', 'sqlalchemy', 'projections', 'api', 'service', 'uvicorn'})\n"
        "print(','.join(loaded))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_the_command_line_loads_without_the_web_framework() -> None:
    result = _python(
        "import sys, service.cli\n"
        "loaded = {m.split('.')[0] for m in sys.modules} & {'litestar', 'api', 'uvicorn'}\n"
        "print(','.join(sorted(loaded)))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_a_ledger_built_around_the_composition_root_refuses_the_library_default_transcoder() -> (
    None
):
    from ledger.application import Ledger
    from ledger.infrastructure.embedded import EmbeddedPublisher

    with pytest.raises(ValueError, match=r"service\.composition\.build_ledger"):
        Ledger({"PERSISTENCE_MODULE": "eventsourcing.popo"}, EmbeddedPublisher())
