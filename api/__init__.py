"""The HTTP API (Litestar): `api.app:create_app` is the app factory `ledger serve` starts."""
