"""WSGI entry point: ``gunicorn 'serving.wsgi:app'``.

Logs go to stderr (gunicorn's error log) at ``INFERBASE_LOG_LEVEL`` (default INFO), as JSON lines
or text (``INFERBASE_LOG_FORMAT``, `serving/logs.py`): a line per chat request with request id, key
id, model, tokens, cost, latency; never prompts or raw keys.
"""

from serving import create_app, logs

logs.configure()

app = create_app()
