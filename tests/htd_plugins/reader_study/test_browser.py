"""A real browser (headless Chromium driven by Selenium) answers a 10-image study as two readers:
one with the keyboard (and a reload half-way), one with the mouse. The database then holds the
20 answers and the report equals the hand computation on that key."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
import time
from collections.abc import Callable, Iterator

import pytest

from .conftest import check_planned_report, planned_answers

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser() -> Iterator[object]:
    missing = [name for name, ok in [("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER),
               ("selenium", importlib.util.find_spec("selenium"))] if not ok]  # fmt: skip
    if missing:
        pytest.skip(
            f"headless browser test skipped: {' and '.join(missing)} not found (install Debian's "
            "chromium and chromium-driver with apt-get; selenium comes with the dev extra)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,860", "--no-first-run", "--disable-extensions"):  # fmt: skip
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(cond: Callable[[], object], what: str, timeout: float = 15.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            value = cond()
            if value:
                return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def shown_image(driver) -> str | None:
    """The id of the image on screen once it is loaded and visible, else None."""
    return driver.execute_script(
        "const i = document.getElementById('img');"
        "return (!document.getElementById('study').hidden && i.complete && i.naturalWidth > 0"
        " && i.style.visibility === 'visible') ? i.dataset.image : null;"
    )


def done_shown(driver) -> bool:
    return driver.execute_script("return !document.getElementById('done').hidden;")


def text(driver, element_id: str) -> str:
    return driver.execute_script(f"return document.getElementById('{element_id}').textContent;")


def login(driver, base: str, reader: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(base + "/")
    box = wait_for(lambda: driver.find_element(By.ID, "reader"), "the start page")
    wait_for(lambda: box.is_displayed(), "the reader box")
    box.send_keys(reader + "\n")


def answer_all(driver, plan: dict[str, tuple[str, int]], use_keys: bool, start: int = 0,
               stop_after: int = 10, reload_at: int = -1) -> int:  # fmt: skip
    """Answer images as ``plan`` says until done (or ``stop_after`` answers); returns the count.

    Keyboard: R/S, 1-5, C + a comment + Esc, Enter. Mouse: the buttons (and a zoom click).
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    answered, last = start, None
    deadline = time.monotonic() + 120
    while answered < stop_after and time.monotonic() < deadline:
        if done_shown(driver):
            break
        img = wait_for(lambda old=last: (i := shown_image(driver)) != old and i, "the next image")
        assert text(driver, "count") == f"{answered} / 10"
        call, quality = plan[img]
        if use_keys:
            body = driver.find_element(By.TAG_NAME, "body")
            body.send_keys(call[0], str(quality), "c")  # c: into the comment box
            driver.switch_to.active_element.send_keys(f"note {answered}", Keys.ESCAPE)
            driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ENTER)
        else:
            driver.find_element(By.CSS_SELECTOR, f"[data-call='{call}']").click()
            driver.find_element(By.CSS_SELECTOR, f"[data-q='{quality}']").click()
            driver.find_element(By.ID, "zoom-in").click()  # zooming must not disturb answers
            driver.find_element(By.ID, "submit").click()
        answered += 1
        last = img
        wait_for(lambda n=answered: text(driver, "count") == f"{n} / 10", "the answer saved")
        if answered == reload_at:
            driver.refresh()  # a reload resumes at the next image: nothing lost or repeated
            last = None
    assert time.monotonic() < deadline, "answering did not finish in time"
    return answered


def test_two_readers_in_chromium(make_study, live_server, browser, study_cli, capsys) -> None:
    from selenium.webdriver.common.by import By

    study = make_study(10)
    plan = planned_answers(study)
    base = live_server(study.root)

    login(browser, base, "ana")  # keyboard only, with a reload after the 4th answer
    assert answer_all(browser, plan["ana"], use_keys=True, reload_at=4) == 10
    wait_for(lambda: text(browser, "done-text").startswith("You answered all 10"), "done page")
    browser.find_element(By.ID, "done-leave").click()

    login(browser, base, "ben")  # mouse; stops after 5 and resumes later
    assert answer_all(browser, plan["ben"], use_keys=False, stop_after=5) == 5
    browser.find_element(By.ID, "stop").click()
    assert "Your 5 answers are saved" in text(browser, "login-msg")
    login(browser, base, "ben")
    wait_for(lambda: text(browser, "count") == "5 / 10", "ben to resume at 5 / 10")
    assert wait_for(lambda: shown_image(browser), "ben's 6th image") == study.order("ben")[5]
    assert answer_all(browser, plan["ben"], use_keys=False, start=5) == 10
    wait_for(lambda: text(browser, "done-text").startswith("You answered all 10"), "done page")

    rows = study.answers()
    assert len(rows) == 20
    got = {(r["reader_id"], r["image_id"]): (r["call"], r["quality"]) for r in rows}
    assert got == {(rd, i): v for rd, a in plan.items() for i, v in a.items()}
    comments = sorted(r["comment"] for r in rows if r["reader_id"] == "ana")
    assert comments == sorted(f"note {i}" for i in range(10))
    assert all(r["elapsed_ms"] is not None and r["elapsed_ms"] >= 0 for r in rows)
    assert study_cli(["report", study.root]) == 0
    capsys.readouterr()
    check_planned_report(json.loads((study.root / "report" / "report.json").read_text()))
