"""A WSGI app for the gunicorn worker tests: answers with the serving process and thread."""

import os
import threading


def app(environ, start_response):  # type: ignore[no-untyped-def]
    n = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(n) if n else b""
    out = f"{os.getpid()} {threading.get_ident()} {environ['PATH_INFO']} {len(body)}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(out)))])
    return [out]
