"""WSGI entry point: ``gunicorn 'serving.wsgi:app'``.

Logs go to stderr (gunicorn's error log) at ``INFERBASE_LOG_LEVEL`` (default INFO): a line per chat
request with request id, key id, model, tokens, cost, latency; never prompts or raw keys.
"""

import logging
import os

from serving import create_app

if not logging.getLogger().handlers:
    logging.basicConfig(
        level=os.environ.get("INFERBASE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
    )

app = create_app()
