"""What a user installs: the built wheel, in a fresh virtual environment (not editable), runs
`ledger db upgrade`, `ledger serve` and an admission, on SQLite and on PostgreSQL.

The wheel is built once per run. Its dependencies are lent from the test environment (a path
file), so the fresh environment holds the wheel's own code and nothing of the checkout: every
`ledger` below runs from site-packages, with the working directory outside the checkout.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import httpx
import pytest

from tests.support.server import running_server, server_env

ROOT = Path(__file__).resolve().parents[2]


def _run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `bin` folder of a fresh venv holding the wheel built from this checkout."""
    work = tmp_path_factory.mktemp("wheel")
    built = _run(
        sys.executable,
        "-m",
        "build",
        "--wheel",
        "--outdir",
        str(work / "dist"),
        str(ROOT),
        cwd=work,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = (work / "dist").glob("admission_ledger-*.whl")
    venv = work / "venv"
    made = _run(sys.executable, "-m", "venv", str(venv), cwd=work)
    assert made.returncode == 0, made.stderr
    bin_dir = venv / "bin"
    installed = _run(
        str(bin_dir / "pip"), "install", "-q", "--no-deps", "--no-index", str(wheel), cwd=work
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # Lend the dependencies: the test environment's site-packages, after the venv's own.
    site = Path(
        _run(
            str(bin_dir / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
            cwd=work,
        ).stdout.strip()
    )
    (site / "lent-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return bin_dir


def _env(database_url: str) -> dict[str, str]:
    return server_env(database_url)


def test_the_wheel_holds_the_code_and_the_migrations_and_its_dependencies_are_met(
    installed: Path, tmp_path: Path
) -> None:
    where = _run(
        str(installed / "python"),
        "-c",
        "import ledger, projections.migrate as m; print(ledger.__file__); print(m.MIGRATIONS)",
        cwd=tmp_path,
    )
    assert where.returncode == 0, where.stderr
    ledger_file, migrations = where.stdout.split()
    site = str(installed.parent / "lib")
    assert ledger_file.startswith(site), ledger_file
    assert migrations.startswith(site) and Path(migrations, "versions").is_dir(), migrations
    check = _run(str(installed / "python"), "-m", "pip", "check", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr


def _upgrade_serve_and_admit(installed: Path, database_url: str, cwd: Path) -> None:
    upgraded = _run(str(installed / "ledger"), "db", "upgrade", cwd=cwd, env=_env(database_url))
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert "-> 0004" in upgraded.stdout
    with running_server(
        database_url, command=[str(installed / "ledger"), "serve"], cwd=cwd
    ) as server:
        answer = httpx.post(
            f"{server.url}/v1/windows/wheel/admissions",
            json={"events": [{"event_type": "t", "event_id": "1", "payload": {"a": 1}}]},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        assert [(r["verdict"], r["offset"]) for r in answer.json()["results"]] == [("ADMITTED", 1)]
        assert (
            httpx.get(f"{server.url}/v1/windows/wheel", timeout=30).json()["counts"]["admitted"]
            == 1
        )
        # The reviewer's pages come with the wheel: templates and stylesheet are package data.
        page = httpx.get(f"{server.url}/windows/wheel", timeout=30)
        assert page.status_code == 200 and 'data-gate="OPEN"' in page.text, page.text[:300]
        css = httpx.get(f"{server.url}/static/ledger.css", timeout=30)
        assert css.status_code == 200 and "@media print" in css.text


def test_the_installed_wheel_migrates_serves_and_admits_on_sqlite(
    installed: Path, tmp_path: Path
) -> None:
    _upgrade_serve_and_admit(installed, f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path)


def test_the_installed_wheel_migrates_serves_and_admits_on_postgresql(
    installed: Path, postgres_url: str, tmp_path: Path
) -> None:
    _upgrade_serve_and_admit(installed, postgres_url, tmp_path)


def test_serve_on_an_empty_postgresql_database_creates_the_schema_itself(
    installed: Path, postgres_url: str, tmp_path: Path
) -> None:
    with running_server(
        postgres_url, command=[str(installed / "ledger"), "serve"], cwd=tmp_path
    ) as server:
        answer = httpx.post(
            f"{server.url}/v1/windows/fresh/admissions",
            json={"events": [{"event_type": "t", "event_id": "1", "payload": {}}]},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
    status = _run(
        str(installed / "ledger"), "projections", "status", cwd=tmp_path, env=_env(postgres_url)
    )
    assert status.returncode == 0, status.stderr


def test_serve_refuses_a_postgresql_schema_at_an_older_revision_naming_the_command(
    installed: Path, postgres_url: str, tmp_path: Path
) -> None:
    env = _env(postgres_url)
    assert _run(str(installed / "ledger"), "db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    downgrade = _run(
        str(installed / "python"),
        "-c",
        "import os; from projections.migrate import downgrade; "
        "from projections.store import create_read_store; "
        "s = create_read_store(os.environ['LEDGER_DATABASE_URL']); "
        "downgrade(s, '0001'); s.dispose()",
        cwd=tmp_path,
        env=env,
    )
    assert downgrade.returncode == 0, downgrade.stderr
    refused = _run(str(installed / "ledger"), "serve", "--port", "1", cwd=tmp_path, env=env)
    assert refused.returncode == 2
    assert "'0001'" in refused.stderr and "ledger db upgrade" in refused.stderr, refused.stderr
    assert "listening" not in refused.stderr
    upgraded = _run(str(installed / "ledger"), "db", "upgrade", cwd=tmp_path, env=env)
    assert "0001 -> 0004" in upgraded.stdout, upgraded.stdout + upgraded.stderr
