"""Bearer tokens with scopes, from LEDGER_API_TOKENS ("token=admit+read,other=operate").

Parsed here, where the settings are read, so that `ledger serve` can refuse a bad setting
before it binds and the API only checks presented tokens.
"""

from __future__ import annotations

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
