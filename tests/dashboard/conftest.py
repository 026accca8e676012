"""Fixtures for the dashboard tests: one real gunicorn gateway per module and headless Chromium."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serving.testing import server as srv
from tests.serving import conftest as serving_conftest
from tests.serving.conftest import make_db_url

pg_ok = serving_conftest.pg_ok  # the fixture, shared with the serving tests
ARTIFACTS = srv.REPO / "test-artifacts"
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
EVAL_ACCOUNT = "evals@example.com"
USERS = {
    "ada@example.com": 5_000_000,  # the browser test's
    "bob@example.com": 2_000_000,  # the event tests'
    "cy@example.com": 1_000_000,
    "dee@example.com": 2_000_000,  # the traffic (compare and feedback) browser test's
    EVAL_ACCOUNT: 1_000_000,  # the operator's: pays for side-by-side comparisons
}


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_url(request: pytest.FixtureRequest, tmp_path: Path, pg_ok: bool) -> Iterator[str]:
    """A fresh database: SQLite, or a throwaway schema on PostgreSQL (skipped when unreachable,
    unless INFERBASE_REQUIRE_POSTGRES=1)."""
    yield from make_db_url(request.param, tmp_path, pg_ok)


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[srv.Server]:
    home = tmp_path_factory.mktemp("gateway")
    db_url = srv.prepare(home, USERS)
    server = srv.start(
        home,
        db_url,
        extra_env={"INFERBASE_EVENTS_REAUTH_S": "1", "INFERBASE_EVAL_ACCOUNT": EVAL_ACCOUNT},
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not (Path(CHROMEDRIVER).exists() and Path(CHROMIUM).exists()):
        if os.environ.get("CI"):
            pytest.fail("chromium/chromium-driver missing: run `make browser`")
        pytest.skip("chromium/chromium-driver not installed (make browser)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--window-size=1280,1000",
    ):  # fmt: skip
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    driver = getattr(item, "funcargs", {}).get("browser")
    if report.when == "call" and report.failed and driver is not None:
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / f"dashboard-FAILED-{item.name}.png"))
        logs = "\n".join(str(e) for e in driver.get_log("browser"))
        report.sections.append(("browser console", logs or "(empty)"))
        report.sections.append(("browser url", driver.current_url))
    return report


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    for old in ARTIFACTS.glob("dashboard-*.png"):
        old.unlink()
    return ARTIFACTS
