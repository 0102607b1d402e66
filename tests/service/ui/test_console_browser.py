"""The operator console in a real browser (headless Chromium) against a live ``reid serve``.

The tests run in order on one server and one browser: the key prompt, enrolment of three people, search with
held-out images (thumbnails, badge, group by person), verify, the XSS person id, delete and erase.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.reliability.conftest import API_KEY
from tests.service.ui.conftest import Console

pytest.importorskip("selenium", reason="selenium (the dev extra) is not installed")
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

XSS = "<img src=x onerror=alert(1)>"


def wait(console: Console, condition: Callable[[Any], Any], seconds: float = 20) -> Any:
    waiting = WebDriverWait(console.driver, seconds, ignored_exceptions=[StaleElementReferenceException])
    return waiting.until(condition)


def by_id(console: Console, element_id: str) -> Any:
    return console.driver.find_element(By.ID, element_id)  # type: ignore[attr-defined]


def tab(console: Console, name: str) -> None:
    console.driver.find_element(By.CSS_SELECTOR, f'.tab[data-tab="{name}"]').click()  # type: ignore[attr-defined]
    wait(console, lambda d: d.find_element(By.ID, f"page-{name}").is_displayed())


def confirm(console: Console, expected: str) -> None:
    wait(console, lambda d: d.find_element(By.ID, "confirm").is_displayed())
    assert expected in by_id(console, "confirm-text").text
    by_id(console, "confirm-ok").click()


def people(console: Console) -> dict[str, str]:
    """Person id → entry count text of the people list, read in one script (the list re-renders)."""
    rows = console.driver.execute_script(  # type: ignore[attr-defined]
        "return [...document.querySelectorAll('#people-list li.person')].map((r) => "
        "[r.querySelector('.person-id').textContent, r.querySelector('.count').textContent])"
    )
    return dict(rows)


def search(console: Console, query: str, group: bool = False) -> list[Any]:
    tab(console, "search")
    by_id(console, "search-file").send_keys(query)
    wait(console, lambda d: d.execute_script("return document.getElementById('search-canvas').width") > 0)
    box = by_id(console, "search-group")
    if box.is_selected() != group:
        box.click()
    console.driver.execute_script("document.getElementById('search-results').replaceChildren()")
    by_id(console, "search-run").click()
    return wait(console, lambda d: d.find_elements(By.CSS_SELECTOR, "#search-results li.match"))


def test_the_console_asks_for_the_api_key(console: Console) -> None:
    console.driver.get(console.url + "#model")  # type: ignore[attr-defined]
    wait(console, lambda d: d.find_element(By.ID, "key-prompt").is_displayed())
    assert "401" in by_id(console, "key-message").text
    by_id(console, "key-input").send_keys(API_KEY)
    by_id(console, "key-submit").click()
    wait(console, lambda d: "demo-siamese@1" in d.find_element(By.ID, "model-info").text)
    assert not by_id(console, "key-prompt").is_displayed()
    info = by_id(console, "model-info").text
    assert "siamese" in info and "CPUExecutionProvider" in info and "ready" in info
    softmax = console.driver.find_element(By.CSS_SELECTOR, '#model-scoring tr[data-metric="softmax"]')
    assert "calibrated" in softmax.text
    stored = console.driver.execute_script("return sessionStorage.getItem('reid-api-key')")
    assert stored == API_KEY
    console.screenshot("model")


def test_enrol_three_people_through_the_console(console: Console) -> None:
    tab(console, "gallery")
    for n, (person, paths) in enumerate(console.images.items()):
        by_id(console, "enrol-person").send_keys(person)
        by_id(console, "enrol-camera").send_keys(f"cam-{n + 1}")
        by_id(console, "enrol-files").send_keys("\n".join(str(p) for p in paths))
        by_id(console, "enrol-run").click()
        wait(console, lambda d, p=person: f"of {p}" in d.find_element(By.ID, "enrol-result").text)
    wait(console, lambda d: len(people(console)) == 3)
    assert people(console) == {person: "4 entries" for person in console.images}
    thumbs = console.driver.find_elements(By.CSS_SELECTOR, "#people-list figure.thumb img")
    wait(console, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#people-list figure.thumb img")) == 3)
    console.screenshot("gallery")
    assert thumbs is not None


@pytest.mark.parametrize("person", ["person-0001", "person-0002", "person-0003"])
def test_search_with_a_held_out_image_ranks_the_person_first(console: Console, person: str) -> None:
    rows = search(console, str(console.queries[person]))
    assert rows[0].get_attribute("data-person") == person
    assert rows[0].find_element(By.CSS_SELECTOR, ".badge").text == "same person"
    wait(console, lambda d: rows[0].find_element(By.CSS_SELECTOR, "figure.thumb img").get_attribute("src"))
    img = rows[0].find_element(By.CSS_SELECTOR, "figure.thumb img")
    wait(console, lambda d: d.execute_script("return arguments[0].naturalWidth", img) > 0)
    assert rows[0].find_elements(By.CSS_SELECTOR, ".bar .threshold")
    if person == "person-0002":
        console.screenshot("search", height=1250)


def test_group_by_person_answers_one_row_per_person(console: Console) -> None:
    rows = search(console, str(console.queries["person-0001"]), group=True)
    assert rows[0].get_attribute("data-person") == "person-0001"
    assert len(rows) == 3 and len({r.get_attribute("data-person") for r in rows}) == 3
    assert "of the top entries" in rows[0].text
    console.screenshot("search-by-person")


def test_boxes_drawn_on_a_frame_are_one_query_each(console: Console, tmp_path: Path) -> None:
    frame = Image.new("RGB", (200, 150), (128, 128, 128))
    for x, person in ((10, "person-0001"), (120, "person-0002")):
        crop = Image.open(console.queries[person]).convert("RGB")
        frame.paste(crop.resize((64, 128)), (x, 10))
    path = tmp_path / "frame.png"
    frame.save(path)
    tab(console, "search")
    by_id(console, "search-file").send_keys(str(path))
    canvas = by_id(console, "search-canvas")
    wait(console, lambda d: canvas.size["width"] > 0)
    factor = canvas.size["width"] / 200  # the canvas shows the frame scaled
    for x in (10, 120):  # drag from corner to corner; selenium's offsets are from the canvas centre
        start = (x * factor - canvas.size["width"] / 2, 10 * factor - canvas.size["height"] / 2)
        end = ((x + 64) * factor - canvas.size["width"] / 2, 138 * factor - canvas.size["height"] / 2)
        chain = ActionChains(console.driver).move_to_element_with_offset(canvas, int(start[0]), int(start[1]))
        chain = chain.click_and_hold().move_by_offset(int(end[0] - start[0]), int(end[1] - start[1]))
        chain.release().perform()
    assert by_id(console, "search-boxes").text.startswith("2 box(es)")
    if by_id(console, "search-group").is_selected():
        by_id(console, "search-group").click()
    console.driver.execute_script("document.getElementById('search-results').replaceChildren()")
    by_id(console, "search-run").click()
    wait(console, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#search-results section.query")) == 2)
    queries = console.driver.find_elements(By.CSS_SELECTOR, "#search-results section.query")
    firsts = [q.find_element(By.CSS_SELECTOR, "li.match").get_attribute("data-person") for q in queries]
    assert firsts == ["person-0001", "person-0002"]
    assert "(box [" in queries[0].text
    console.screenshot("search-boxes")
    by_id(console, "search-clear").click()


def test_verify_same_and_different(console: Console) -> None:
    tab(console, "verify")
    verdicts = {}
    for other in ("person-0001", "person-0002", "gallery id 1"):
        for field in ("verify-file-a", "verify-file-b", "verify-id-b"):
            by_id(console, field).clear()
        by_id(console, "verify-file-a").send_keys(str(console.queries["person-0001"]))
        if other in console.images:
            by_id(console, "verify-file-b").send_keys(str(console.images[other][0]))
        else:  # the first entry enrolled, an image of person-0001
            by_id(console, "verify-id-b").send_keys("1")
        console.driver.execute_script("document.getElementById('verify-result').hidden = true")
        by_id(console, "verify-run").click()
        wait(console, lambda d: d.find_element(By.ID, "verify-result").is_displayed())
        verdicts[other] = by_id(console, "verify-result").text
    assert verdicts["person-0001"].startswith("Same person")
    assert verdicts["gallery id 1"].startswith("Same person")
    assert verdicts["person-0002"].startswith("Different people")
    assert "threshold" in verdicts["person-0002"] and "p(same person)" in verdicts["person-0002"]
    console.screenshot("verify")


def test_a_person_id_with_markup_renders_as_text(console: Console) -> None:
    tab(console, "gallery")
    by_id(console, "enrol-person").send_keys(XSS)
    by_id(console, "enrol-metadata").send_keys(json.dumps({"note": "<b>bold</b>"}))
    by_id(console, "enrol-files").send_keys(str(console.images["person-0001"][1]))
    by_id(console, "enrol-run").click()
    wait(console, lambda d: XSS in people(console))
    by_id(console, "people-filter").send_keys("onerror")
    wait(console, lambda d: list(people(console)) == [XSS])
    row = console.driver.find_element(By.CSS_SELECTOR, "#people-list li.person")
    assert row.find_element(By.CLASS_NAME, "person-id").text == XSS
    row.find_element(By.CLASS_NAME, "open").click()
    wait(console, lambda d: d.find_element(By.ID, "entries-person").text == XSS)
    wait(console, lambda d: "<b>bold</b>" in d.find_element(By.ID, "entries-list").text)
    assert not console.driver.find_elements(By.CSS_SELECTOR, 'img[src="x"], b')
    with pytest.raises(NoAlertPresentException):
        console.driver.switch_to.alert.text  # noqa: B018
    console.screenshot("xss-as-text")
    console.driver.find_element(By.CSS_SELECTOR, "#entries-list li.entry .delete").click()
    confirm(console, "cannot be undone")
    wait(console, lambda d: XSS not in people(console))
    by_id(console, "people-filter").clear()


def test_erase_a_person_removes_them_from_the_list_and_from_search(console: Console) -> None:
    tab(console, "gallery")
    wait(console, lambda d: "person-0003" in people(console))
    row = console.driver.find_element(By.CSS_SELECTOR, '#people-list li.person[data-person="person-0003"]')
    row.find_element(By.CLASS_NAME, "open").click()
    wait(console, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#entries-list li.entry")) == 4)
    by_id(console, "entries-erase").click()
    confirm(console, "irreversible")
    wait(console, lambda d: "person-0003" not in people(console))
    assert not by_id(console, "entries-panel").is_displayed()
    console.screenshot("gallery-after-erase")
    rows = search(console, str(console.queries["person-0003"]))
    assert "person-0003" not in {r.get_attribute("data-person") for r in rows}
    assert len(rows) == 8
