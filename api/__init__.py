"""The HTTP API (Litestar). `create_app(settings)` is the composition root."""

from api.app import create_app

__all__ = ["create_app"]
