"""Bearer tokens with scopes (LEDGER_API_TOKENS="token=admit+read,other=operate")."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

SCOPES = frozenset({"admit", "operate", "read"})


class TokenError(ValueError):
    pass


def parse_tokens(spec: str) -> dict[str, frozenset[str]]:
    tokens: dict[str, frozenset[str]] = {}
    for pair in filter(None, (p.strip() for p in spec.split(","))):
        token, sep, scopes = pair.partition("=")
        wanted = frozenset(s.strip() for s in scopes.split("+") if s.strip())
        if not sep or not token.strip() or not wanted or not wanted <= SCOPES:
            # Never echo the token itself: name the position instead.
            raise TokenError(
                "LEDGER_API_TOKENS must be token=scope[+scope...] pairs separated by commas, "
                f"scopes among {sorted(SCOPES)}; entry {len(tokens) + 1} is not"
            )
        tokens[token.strip()] = wanted
    return tokens


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

    def check(self, connection: ASGIConnection[Any, Any, Any, Any], scope: str) -> None:
        if not self.enabled:
            return
        header = connection.headers.get("authorization", "")
        kind, _sep, presented = header.partition(" ")
        scopes = self.scopes_of(presented.strip()) if kind.lower() == "bearer" else None
        if scopes is None:
            raise NotAuthorizedException("a valid bearer token is required")
        if scope not in scopes:
            raise PermissionDeniedException(f"this token lacks the {scope!r} scope")


Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]


def requires(scope: str) -> Guard:
    """A route guard for `scope`, using the app's TokenAuth (app.state.auth)."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        connection.app.state.auth.check(connection, scope)

    return guard
