"""Bad input refused before Litestar decodes anything of a request: Litestar's `before_request`
hooks run after the guards and before any parameter or body is parsed. A route's own hook
replaces the app's, so the admissions route's hook runs the app's check too."""

from __future__ import annotations

import re
from typing import Any

from litestar import Request
from litestar.exceptions import ValidationException

from ledger.admissions import BODY_LEVELS, check_nesting

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


async def refuse_control_characters(request: Request[Any, Any, Any]) -> None:
    """No path parameter takes a control character: 400, as any bad path parameter. The app's
    hook, for every route: a NUL once reached the static files' `os.stat` (a 500)."""
    # Async, though it never awaits: Litestar runs a sync hook in a worker thread.
    if _CONTROL.search(request.scope["path"]):
        raise ValidationException(
            detail="the path holds a control character (U+0000 to U+001F or U+007F), "
            "which no path parameter takes"
        )


async def refuse_deep_admissions(request: Request[Any, Any, Any]) -> None:
    """The admissions route's hook: the path, then the body's nesting (ADR 0023), before
    Litestar's decoder recurses into it (near 1,000 levels it fails with a RecursionError)."""
    await refuse_control_characters(request)
    check_nesting(await request.body(), BODY_LEVELS)
