"""The dependency rule of the core, checked by reading its source: the kernel modules and the
domain import only the standard library, eventsourcing's domain module and each other (no
framework, no storage, no read side). import-linter checks the layers above them
(tests/tooling/test_structure.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support import ROOT
from tests.support.source import imported_modules

LEDGER = ROOT / "ledger"

PURE_MODULES = [
    "domain/__init__.py",
    "domain/base.py",
    "domain/chain.py",
    "domain/forms.py",
    "domain/window.py",
    "verdicts.py",
    "jcs.py",
    "errors.py",
    "receipts.py",
    "gate.py",
]
ALLOWED_PROJECT_IMPORTS = {
    "eventsourcing.domain",
    "ledger.domain",
    "ledger.domain.base",
    "ledger.domain.chain",
    "ledger.domain.forms",
    "ledger.domain.window",
    "ledger.verdicts",
    "ledger.jcs",
    "ledger.errors",
}


def project_imports(path: Path) -> set[str]:
    found = imported_modules(path)
    relative = sorted(name for name in found if name.startswith("."))
    assert not relative, f"{path.name}: relative import {relative}"
    return found


def forbidden_imports(path: Path) -> set[str]:
    return {
        name
        for name in project_imports(path)
        if name.split(".")[0] not in sys.stdlib_module_names and name not in ALLOWED_PROJECT_IMPORTS
    }


@pytest.mark.parametrize("module", PURE_MODULES)
def test_the_core_imports_only_the_standard_library_eventsourcing_domain_and_itself(
    module: str,
) -> None:
    assert project_imports(LEDGER / module), f"the parser found no imports in {module}"
    offenders = forbidden_imports(LEDGER / module)
    assert offenders == set(), f"{module} imports {sorted(offenders)}"


def test_the_dependency_check_catches_third_party_and_other_project_imports(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import json\nimport msgspec\nfrom eventsourcing.application import Application\n"
        "from eventsourcing.domain import Aggregate\nfrom ledger.application import Ledger\n"
        "from ledger.jcs import canonicalize\n"
    )
    assert forbidden_imports(bad) == {
        "msgspec",
        "eventsourcing.application",
        "ledger.application",
    }
