"""The HTTP API (Litestar): `api.app:create_app` is the app factory; `ledger serve` starts
`api.app:serve_app`, the same app for a process of its own."""
