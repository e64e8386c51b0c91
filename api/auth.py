"""Checking bearer tokens and their scopes on each request (the tokens are parsed in
`service.tokens`, from LEDGER_API_TOKENS)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler


class TokenAuth:
    def __init__(self, tokens: dict[str, frozenset[str]]) -> None:
        self._tokens = [(t.encode(), scopes) for t, scopes in tokens.items()]

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def scopes_of(self, presented: str) -> frozenset[str] | None:
        # Compare against every token in constant time, whichever matches.
        given = presented.encode()
        found: frozenset[str] | None = None
        for token, scopes in self._tokens:
            if hmac.compare_digest(token, given):
                found = scopes
        return found

    def _presented(self, connection: ASGIConnection[Any, Any, Any, Any]) -> frozenset[str] | None:
        return self._bearer(connection.headers.get("authorization", ""))

    def _bearer(self, header: str) -> frozenset[str] | None:
        kind, _sep, presented = header.partition(" ")
        return self.scopes_of(presented.strip()) if kind.lower() == "bearer" else None

    def grants(self, headers: list[tuple[bytes, bytes]], scope: str) -> bool:
        """Whether raw ASGI headers carry a token with `scope` (or auth is off): `check` for
        a path that has no Litestar request, which leaves every refusal to the route."""
        if not self.enabled:
            return True
        values = [value for name, value in headers if name == b"authorization"]
        if len(values) != 1:  # none, or several: the route says which refusal it is
            return False
        scopes = self._bearer(values[0].decode("latin-1"))
        return scopes is not None and scope in scopes

    def allows(self, connection: ASGIConnection[Any, Any, Any, Any], scope: str) -> bool:
        """Whether the caller may see what `scope` guards (anyone, without tokens); for an
        endpoint that answers everyone but tells more to some (`/health`)."""
        if not self.enabled:
            return True
        scopes = self._presented(connection)
        return scopes is not None and scope in scopes

    def caller(self, connection: ASGIConnection[Any, Any, Any, Any]) -> str:
        """Who is calling, as far as the service can say without keeping a secret: the scopes
        of the token presented (never the token, nor a hash of it), or that auth is off."""
        if not self.enabled:
            return "an unauthenticated caller (LEDGER_API_TOKENS unset)"
        scopes = self._presented(connection) or frozenset()
        return f"a bearer token with scopes {'+'.join(sorted(scopes)) or 'none'}"

    def check(self, connection: ASGIConnection[Any, Any, Any, Any], scope: str) -> None:
        if not self.enabled:
            return
        scopes = self._presented(connection)
        if scopes is None:
            raise NotAuthorizedException("a valid bearer token is required")
        if scope not in scopes:
            raise PermissionDeniedException(f"this token lacks the {scope!r} scope")


Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


def requires(scope: str) -> Guard:
    """A route guard for `scope`, using the app's TokenAuth (app.state.auth)."""

    # Async, though it never awaits: Litestar runs a sync guard in a worker thread, a thread
    # hop on every request for a check of a few microseconds.
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        connection.app.state.auth.check(connection, scope)

    return guard
