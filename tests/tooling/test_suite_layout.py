"""The test suite's own house rules: a pyramid of levels and the fault suite, helpers only in
tests/support, no test importing a conftest or another test module, unit tests free of I/O."""

from __future__ import annotations

from pathlib import Path

from tests.support import ROOT
from tests.support.source import imported_modules

TESTS = ROOT / "tests"
LEVELS = ("unit", "integration", "e2e", "faults", "tooling")
# What a unit test must not reach for: storage, processes, sockets, the bus, the served app, and
# the support modules that wrap them.
UNIT_FORBIDDEN = (
    "sqlite3",
    "psycopg",
    "sqlalchemy",
    "subprocess",
    "socket",
    "nats",
    "httpx",
    "service.composition",
    "projections",
    "tests.support.cli",
    "tests.support.http",
    "tests.support.nats",
    "tests.support.readside",
    "tests.support.server",
    "tests.support.services",
    "tests.support.storage",
)


def is_test_module_or_conftest(module: str) -> bool:
    last = module.rsplit(".", 1)[-1]
    return last == "conftest" or last.startswith("test_")


def test_every_test_module_sits_in_one_of_the_levels() -> None:
    misplaced = [
        str(path.relative_to(TESTS))
        for path in TESTS.rglob("test_*.py")
        if path.relative_to(TESTS).parts[0] not in LEVELS
    ]
    assert misplaced == []
    for level in LEVELS:
        assert (TESTS / level / "__init__.py").is_file(), level


def test_no_file_of_the_suite_imports_a_conftest_or_a_test_module() -> None:
    offenders = {
        str(path.relative_to(TESTS)): sorted(
            m for m in imported_modules(path) if is_test_module_or_conftest(m)
        )
        for path in sorted(TESTS.rglob("*.py"))
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_unit_tests_import_no_storage_process_socket_or_served_app() -> None:
    offenders = {
        str(path.relative_to(TESTS)): sorted(
            m
            for m in imported_modules(path)
            if any(m == f or m.startswith(f + ".") for f in UNIT_FORBIDDEN)
        )
        for path in sorted((TESTS / "unit").rglob("*.py"))
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_import_check_sees_conftest_and_test_module_imports(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from tests.conftest import batch\nimport tests.integration.test_admission\n"
        "from tests.support.builders import event\nfrom .conftest import x\n"
    )
    found = {m for m in imported_modules(bad) if is_test_module_or_conftest(m)}
    assert found == {"tests.conftest", "tests.integration.test_admission", ".conftest"}
