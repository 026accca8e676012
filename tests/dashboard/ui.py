"""What the browser tests do with a page: bounded waits, reading text, screenshots, signing in."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait


def wait(driver: Any, timeout: float = 10) -> WebDriverWait:
    # tables re-render on live events: an element read mid-render is stale, so read it again
    return WebDriverWait(
        driver,
        timeout,
        poll_frequency=0.1,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    )


def text(driver: Any, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def shot(driver: Any, artifacts: Path, name: str) -> None:
    driver.save_screenshot(str(artifacts / f"dashboard-{name}.png"))


def visible(driver: Any, css: str, timeout: float = 10) -> Any:
    return wait(driver, timeout).until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)))


def at(driver: Any, path: str) -> None:
    wait(driver).until(lambda d: urlsplit(d.current_url).path == path)


def live(driver: Any) -> None:
    wait(driver).until(lambda d: text(d, "#live") == "● live")


def severe(driver: Any) -> list[str]:
    """The browser console's SEVERE entries since the last call (JS errors, failed requests)."""
    return [str(e["message"]) for e in driver.get_log("browser") if e["level"] == "SEVERE"]
