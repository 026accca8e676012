"""The host's rate-limit counter file (`file` storage, and the login throttle's on SQLite) is
created by every gunicorn worker at boot: workers starting together must all come up."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Each worker is a fresh interpreter that waits for one shared instant, then creates the file: as
# gunicorn's workers, all at once. (Forking the test process instead copied its other tests'
# threads and their held locks into the children, which then hung now and then in the full suite,
# and at exit pytest waited on the hung child for good.)
BOOT = """
import sys, time
from pathlib import Path
from serving.ratelimit import file_engine
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
file_engine(Path(sys.argv[1])).dispose()
"""


def test_workers_booting_together_all_create_the_counter_file(tmp_path: Path) -> None:
    failed = []
    for round_ in range(8):  # a deferred transaction lost this race about one worker in nine
        home = tmp_path / f"home{round_}"
        start = time.time() + 3.0  # after every interpreter has imported serving
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", BOOT, str(home), repr(start)],
                cwd=REPO,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(6)
        ]
        try:
            for p in procs:
                _, err = p.communicate(timeout=120)
                if p.returncode != 0:
                    failed.append(err[-2000:])
        finally:  # a hung worker must not outlive the test (nor keep the session from ending)
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
    assert not failed, failed[0]
