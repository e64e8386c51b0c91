"""Statements rendered to bytes once (ADR 0041).

psycopg renders a composed statement (`SQL(...).format(Identifier(...))`) again on every
execute: it walks the parts and asks libpq to quote each identifier. The write path runs a
dozen such statements a transaction, the same text every time; given as bytes, a statement
goes straight to psycopg's query cache.
"""

from __future__ import annotations

from typing import LiteralString

from psycopg.abc import Query
from psycopg.sql import SQL, Composable


def rendered(statement: Query) -> bytes:
    """The bytes psycopg sends for this statement: UTF-8, identifiers quoted as libpq's
    PQescapeIdentifier quotes them (in double quotes, a double quote doubled)."""
    if isinstance(statement, bytes):
        return statement
    if isinstance(statement, Composable):
        return statement.as_bytes(None)
    if isinstance(statement, str):
        return statement.encode("utf-8")
    raise TypeError(f"cannot render {type(statement).__name__} once")


def statement(template: LiteralString, **parts: Composable) -> bytes:
    """`SQL(template).format(**parts)`, rendered once."""
    return rendered(SQL(template).format(**parts))
