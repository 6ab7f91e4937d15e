"""Screenshots of the app's main screens with Playwright and Debian chromium (never a downloaded browser).

    python docs/screenshots/take_screenshots.py            # the real app: embedded model, demo cases
    python docs/screenshots/take_screenshots.py --stand-in # the UI over the test analyser (tests/app_fakes.py)

Writes docs/screenshots/{review,sentence,corrections,sign,model,worklist}.png at 1600×1000 (the stand-in run
prefixes "standin_"): the case opened, a sentence selected (clicked in the report), an edit re-grounded and a flag
(the whole page, with the word diff under it), signing refused with the unreviewed sentences named, the Model tab,
and the worklist last, after the case was corrected.
Starts the app on a free local port with a temporary SQLite store.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

import model  # noqa: E402,F401
from review.analyser import make_service  # noqa: E402
from ui import launch  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = (1600, 1000)  # the reading layout's target (issue 16); screens are the viewport, as a reader sees it
MSG = "document.querySelector('#gcxr-action-msg').innerText"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stand-in", action="store_true", help="use the test analyser instead of the real model")
    p.add_argument("--model", default=None, help="model directory (default: the embedded default)")
    p.add_argument("--case", default=None, help="case to show (default: the first phantom demo case)")
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    tmp = tempfile.mkdtemp(prefix="gcxr-shots-")
    if args.stand_in:
        sys.path.insert(0, os.path.join(ROOT, "tests"))
        from app_fakes import make_service as fake_backend
        backend, prefix = fake_backend(tmp, n_cases=3), "standin_"
    else:
        backend, prefix = make_service(args.model, None, tmp), ""
    case = args.case or next(iter(backend.cases))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = launch(backend, port=port, block=False)
    url = f"http://127.0.0.1:{port}/"

    def shot(page, name, full_page=False):
        # Gradio dims a component while its update is pending; a screenshot taken then shows a greyed screen.
        page.wait_for_function("!document.querySelector('.pending, .generating, .eta-bar')", timeout=60_000)
        page.wait_for_timeout(400)
        # A 256-colour palette keeps each screenshot small enough to commit without visible loss for a UI.
        from PIL import Image
        path = os.path.join(HERE, f"{prefix}{name}.png")
        page.screenshot(path=path, full_page=full_page)
        Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)

    def saved(page, button, expect="Saved"):
        before = page.evaluate(MSG)
        page.locator(button).click()
        page.wait_for_function(f"(b) => {MSG} !== b && {MSG}.includes({expect!r})", arg=before, timeout=120_000)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": VIEWPORT[0], "height": VIEWPORT[1]})
            page.goto(url)
            page.wait_for_selector("#gcxr-worklist [role=gridcell]", timeout=60_000)
            page.locator("#gcxr-worklist [role=gridcell]", has_text=case).first.click()
            page.wait_for_selector("#gcxr-report h4", timeout=120_000)
            shot(page, "review")
            page.locator("#gcxr-report li.gcxr-sentence").first.click()  # the reader clicks the sentence
            page.wait_for_selector("#gcxr-report li.gcxr-selected", timeout=60_000)
            page.wait_for_selector("#gcxr-heatmap img", timeout=60_000)
            shot(page, "sentence")
            page.locator("#gcxr-reviewer textarea, #gcxr-reviewer input").first.fill("dr.demo")
            page.locator("#gcxr-text textarea, #gcxr-text input").first.fill("The heart size is at the upper limit "
                                                                              "of normal.")
            saved(page, "#gcxr-edit")
            page.wait_for_selector("#gcxr-report .gcxr-regrounded", timeout=60_000)
            page.locator("#gcxr-report li.gcxr-sentence").last.click()
            page.wait_for_selector("#gcxr-report li.gcxr-selected:last-child", timeout=60_000)
            saved(page, "#gcxr-flag")
            page.locator("#gcxr-report li.gcxr-sentence").first.click()
            page.wait_for_selector("#gcxr-report li.gcxr-selected", timeout=60_000)
            page.wait_for_timeout(1000)
            shot(page, "corrections", full_page=True)
            saved(page, "#gcxr-sign", "not signed")
            shot(page, "sign")
            page.get_by_role("tab", name="Model").click()
            page.wait_for_selector("#gcxr-model-card", timeout=30_000)
            shot(page, "model")
            page.get_by_role("tab", name="Worklist").click()
            page.get_by_role("button", name="Refresh").click()
            page.wait_for_timeout(2000)
            shot(page, "worklist")
            browser.close()
    finally:
        demo.close()
    print(f"wrote {prefix}*.png to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
