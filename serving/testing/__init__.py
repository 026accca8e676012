"""Fakes and a real-gunicorn test server of the gateway, for the tests and the benchmarks (as
`flask.testing` is Flask's): `fakes` (engines and router with the real contracts), `server` (a
gunicorn gateway on a temp database) and `app` (the WSGI app that server runs)."""
