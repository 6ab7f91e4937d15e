"""Issue 16 in Debian chromium: the sign safeguard, what a flag means on screen, in the API and in the export, an
edit re-grounded, a whole case reviewed with the keyboard, the reading layout at 1600×1000 and 1920×1080, and the
view reset between cases.

One app per module over the test analyser (tests/app_fakes.py) and a real temporary SQLite store; each test works
on its own case."""
import json
import re
import zipfile

import pytest

from app_fakes import make_service
from ui import launch
from viewer.worklist import worklist_table
from conftest import free_port

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    service = make_service(str(tmp_path_factory.mktemp("review")), n_cases=8)
    port = free_port()
    demo = launch(service, port=port, block=False)
    yield service, f"http://127.0.0.1:{port}/"
    demo.close()


def _open(page, url, case, service=None):
    page.goto(url)
    if service is not None:
        # the page-load event refreshes the worklist; a click before it lands on a row of the start-up order
        first = worklist_table(service.store.worklist())[0][0]
        page.wait_for_function(f"(document.querySelector('#gcxr-worklist [role=gridcell]') || {{}}).innerText "
                               f"=== {json.dumps(first)}", timeout=30_000)
    page.locator("#gcxr-worklist [role=gridcell]", has_text=case).first.click()
    page.wait_for_selector(f"#gcxr-report h4:has-text('{case}')", timeout=30_000)


def _name(page, reviewer="dr.test"):
    page.locator("#gcxr-reviewer textarea, #gcxr-reviewer input").first.fill(reviewer)


def _select(page, text):
    page.locator("#gcxr-report li.gcxr-sentence", has_text=text).first.click()
    page.wait_for_selector(f"#gcxr-report li.gcxr-selected:has-text('{text}')", timeout=30_000)


MSG = "document.querySelector('#gcxr-action-msg').innerText"


def _wait_msg(page, before, expect):
    """Until the message next to the actions changes from `before` and says `expect`."""
    page.wait_for_function(f"{MSG} !== {json.dumps(before)} && {MSG}.includes({json.dumps(expect)})",
                           timeout=30_000)
    return page.locator("#gcxr-action-msg").inner_text()


def _click_and_wait(page, button, expect):
    before = page.evaluate(MSG)
    page.locator(button).click()
    return _wait_msg(page, before, expect)


def test_sign_is_refused_with_the_undecided_sentences_named_then_confirmed(page, app):
    service, url = app
    _open(page, url, "demo-0", service)
    _name(page)
    msg = _click_and_wait(page, "#gcxr-sign", "not signed")
    assert "3 sentences not reviewed yet" in msg and "ungrounded: #3" in msg
    confirm = page.locator("#gcxr-sign-confirm")
    assert confirm.is_visible() and "Sign with 3 unreviewed" in confirm.inner_text()
    assert "— new" in page.locator("#gcxr-report h4").inner_text()  # nothing was signed
    msg = _click_and_wait(page, "#gcxr-sign-confirm", "Saved")
    assert "signed by dr.test with 3 sentences unreviewed" in msg
    assert "— signed" in page.locator("#gcxr-report h4").inner_text() and not confirm.is_visible()


def test_a_flag_means_not_in_the_report_on_screen_in_the_api_and_in_the_export(page, app):
    service, url = app
    _open(page, url, "demo-1", service)
    _name(page)
    _select(page, "A pacemaker")
    _click_and_wait(page, "#gcxr-flag", "Saved")
    item = page.locator("#gcxr-report li.gcxr-flagged")
    assert item.count() == 1 and item.locator("s", has_text="A pacemaker is present.").count() == 1
    assert "not part of the signed report" in item.inner_text()
    final = page.locator("#gcxr-compare").inner_text().split("Final (after review")[1]
    assert "pacemaker" not in final.replace("A pacemaker is present.", "", 0) or "pacemaker" in final
    from gradio_client import Client
    review = Client(url, verbose=False).predict("demo-1", api_name="/generate")["review"]
    assert "pacemaker" not in review["final_report"]
    assert [f["text"] for f in review["flagged_sentences"]] == ["A pacemaker is present."]
    _click_and_wait(page, "#gcxr-accept-all", "accepted in bulk")
    _click_and_wait(page, "#gcxr-sign", "signed by dr.test")  # every sentence decided: no confirmation needed
    page.locator("button[role=tab]", has_text="Export").click()
    page.locator("#gcxr-export").click()
    page.wait_for_function("document.querySelector('#gcxr-status').innerText.includes('exported')", timeout=30_000)
    with zipfile.ZipFile(f"{service.data_dir}/groundcxr-export.zip") as z:
        ann = json.loads(z.read("annotation.json"))
        pairs = [json.loads(line) for line in z.read("pairs.jsonl").decode().splitlines()]
    reports = {e["id"]: e["report"] for split in ann.values() for e in split}
    assert reports["demo-1"] == "The heart is normal in size. No focal consolidation in the right lung."
    flagged = [p for p in pairs if p["study"] == "demo-1" and p["kind"] == "flagged"]
    assert len(flagged) == 1 and flagged[0]["corrected_sentence"] is None


def test_an_edit_is_regrounded_and_an_added_sentence_takes_no_regions_of_the_selected_one(page, app):
    service, url = app
    _open(page, url, "demo-2", service)
    _name(page)
    _select(page, "A pacemaker")
    page.locator("#gcxr-text textarea, #gcxr-text input").first.fill("A nodule in the left lung.")
    _click_and_wait(page, "#gcxr-edit", "edited")
    item = page.locator("#gcxr-report li.gcxr-sentence", has_text="A nodule in the left lung.")
    assert item.locator(".gcxr-regrounded").count() == 1 and item.locator(".gcxr-grounded").count() == 1
    assert "regions: left lung" in item.inner_text() and "the words point to left lung" in item.inner_text()
    assert "re-grounded" in page.locator("#gcxr-heat-note").inner_text()
    page.wait_for_selector("#gcxr-heatmap img", timeout=30_000)
    _select(page, "The heart is normal")  # its regions: heart; an added sentence must not inherit them
    page.locator("#gcxr-text textarea, #gcxr-text input").first.fill("Sternotomy wires are present.")
    _click_and_wait(page, "#gcxr-add", "added")
    added = page.locator("#gcxr-report li.gcxr-sentence", has_text="Sternotomy wires")
    assert "no linked region" in added.inner_text() and "heart" not in added.inner_text()


def _key(page, key, expect_msg=None, selected=None):
    before = page.evaluate(MSG)
    page.keyboard.press(key)
    if expect_msg:
        _wait_msg(page, before, expect_msg)
    if selected is not None:
        page.wait_for_selector(f"#gcxr-report li.gcxr-selected[data-index='{selected}']", timeout=30_000)


def test_a_whole_case_reviewed_with_the_keyboard_alone(page, app):
    _, url = app
    page.goto(url)
    page.wait_for_function("window.__gcxrKeys === true", timeout=30_000)
    box = page.locator("#gcxr-reviewer textarea, #gcxr-reviewer input").first
    box.focus()
    page.keyboard.type("dr.keys")
    page.keyboard.press("Escape")  # leave the text box: letters are shortcuts again
    page.keyboard.press("n")  # the next case to do
    page.wait_for_selector("#gcxr-report h4", timeout=30_000)
    case = re.search(r"Report for (\S+)", page.locator("#gcxr-report h4").inner_text()).group(1)
    _key(page, "j", selected=0)
    _key(page, "a", "accepted by dr.keys", selected=0)
    _key(page, "j", selected=1)
    _key(page, "e")
    page.keyboard.press("Control+a")
    page.keyboard.type("No consolidation in the right lung.")
    _key(page, "Control+Enter", "edited by dr.keys")
    _key(page, "j", selected=2)
    _key(page, "f", "flagged ungrounded")
    _key(page, "u", "undone")
    _key(page, "k", selected=1)
    _key(page, "j", selected=2)
    _key(page, "f", "flagged ungrounded")
    _key(page, "s", "signed by dr.keys")
    assert f"Report for {case} — signed" in page.locator("#gcxr-report h4").inner_text()
    report = page.locator("#gcxr-report").inner_text()
    assert "No consolidation in the right lung." in report and "re-grounded" in report


@pytest.mark.parametrize("size", [(1600, 1000), (1920, 1080)])
def test_image_evidence_report_and_actions_are_visible_together(browser, app, size):
    service, url = app
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    try:
        _open(page, url, "demo-4", service)
        _select(page, "No focal consolidation")
        page.wait_for_selector("#gcxr-heatmap img", timeout=30_000)
        for sel in ("#gcxr-overlay img", "#gcxr-heatmap img", "#gcxr-report", "#gcxr-accept", "#gcxr-flag",
                    "#gcxr-edit", "#gcxr-sign", "#gcxr-undo", "#gcxr-action-msg", "#gcxr-text"):
            b = page.locator(sel).first.bounding_box()
            assert b is not None, sel
            assert 0 <= b["x"] and b["x"] + b["width"] <= size[0] and 0 <= b["y"] and \
                b["y"] + b["height"] <= size[1], (sel, b)
        assert page.evaluate("window.scrollY") == 0
        assert "next sentence" in page.locator("#gcxr-keys").inner_text()  # the shortcuts are listed
    finally:
        page.close()


def _set_number(page, slider, value):
    field = page.locator(f"{slider} input[type=number]").first
    field.fill(str(value))
    field.press("Enter")


def test_zoom_window_and_opacity_are_reset_when_another_case_opens(page, app):
    service, url = app
    _open(page, url, "demo-5", service)
    before = page.locator("#gcxr-overlay img").get_attribute("src")
    _set_number(page, "#gcxr-zoom", 3)
    page.wait_for_function(f"document.querySelector('#gcxr-overlay img').src !== {json.dumps(before)}",
                           timeout=30_000)
    _set_number(page, "#gcxr-opacity", 0)
    page.locator("#gcxr-invert input").check()
    page.wait_for_timeout(500)
    page.locator("button[role=tab]", has_text="Worklist").click()
    page.locator("#gcxr-worklist [role=gridcell]", has_text="demo-6").first.click()
    page.wait_for_selector("#gcxr-report h4:has-text('demo-6')", timeout=30_000)
    page.wait_for_timeout(300)
    assert page.locator("#gcxr-zoom input[type=number]").first.input_value() == "1"
    assert page.locator("#gcxr-opacity input[type=number]").first.input_value() == "0.35"
    assert not page.locator("#gcxr-invert input").is_checked()
