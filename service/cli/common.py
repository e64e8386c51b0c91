"""What every command shares: the services, JSON output, exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from service.composition import Services, build_services
from service.settings import Settings

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


@contextmanager
def services() -> Iterator[Services]:
    built = build_services(Settings.from_env())
    try:
        yield built
    finally:
        built.close()


def print_json(value: Any, out: IO[str]) -> None:
    out.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
