"""gunicorn server hooks of `inferbase serve` (``gunicorn -c python:serving.gconf``; gunicorn reads
only the names of its settings from this module).

`on_exit` runs in the master when the server stops (SIGINT/Ctrl-C, SIGTERM, or a failed boot): it
stops the local engines `inferbase up` started (`serving.engines.local.stop_on_exit`). With plain
`serve`, or engines that ran before `up`, there are none and nothing is stopped.
"""

from __future__ import annotations

import os
from typing import Any


def on_exit(server: Any) -> None:
    from serving.engines import local

    if not os.environ.get(local.STOP_ON_EXIT_ENV):
        return
    server.log.info("stopping the local engines `inferbase up` started")
    stopped = local.stop_on_exit()
    server.log.info("stopped %d local engine(s): %s", len(stopped), ", ".join(stopped) or "-")
