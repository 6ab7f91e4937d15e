"""The review app in Debian chromium: open, select, correct, reload, upload, hostile text; and the API client.

One app per module (started in a thread on a free port, a fake analyser over a real temporary SQLite store);
each test works on its own case so the order of tests does not matter."""
import os
import re

import numpy as np
import pytest

from app_fakes import make_service
from ui import launch
from conftest import free_port

pytestmark = pytest.mark.browser
HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    backend = make_service(str(tmp_path_factory.mktemp("app")), n_cases=5)
    port = free_port()
    demo = launch(backend, port=port, block=False)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def _open(page, url, case):
    page.goto(url)
    page.locator("#gcxr-worklist [role=gridcell]", has_text=case).first.click()
    page.wait_for_selector(f"#gcxr-report h4:has-text('{case}')", timeout=30_000)


def _select_sentence(page, text):
    # the reader clicks the sentence in the report itself (issue 16)
    page.locator("#gcxr-report li.gcxr-sentence", has_text=text).first.click()
    page.wait_for_selector(f"#gcxr-report li.gcxr-selected:has-text('{text}')", timeout=30_000)


def _act(page, button, reviewer="dr.test"):
    page.locator("#gcxr-reviewer textarea, #gcxr-reviewer input").first.fill(reviewer)
    before = page.evaluate("document.querySelector('#gcxr-action-msg').innerText")
    page.locator(button).click()
    # the confirmation appears next to the buttons, not at the top of the page
    page.wait_for_function("(b) => { const t = document.querySelector('#gcxr-action-msg').innerText; "
                           "return t !== b && t.includes('Saved'); }", arg=before, timeout=30_000)


def test_open_case_and_select_sentence_highlights_its_regions(page, app_url):
    _open(page, app_url, "demo-0")
    assert page.locator("#gcxr-report li").count() == 3
    assert page.locator("#gcxr-report .gcxr-ungrounded").count() == 1
    assert page.locator("#gcxr-overlay img").count() == 1
    _select_sentence(page, "The heart is normal")
    assert "The heart is normal" in page.locator("#gcxr-report li.gcxr-selected").inner_text()
    page.wait_for_selector("#gcxr-legend b:has-text('heart')", timeout=30_000)
    page.wait_for_selector("#gcxr-heatmap img", timeout=30_000)
    # Selecting a region lists the sentences grounded in it.
    page.locator("#gcxr-region input").click()
    page.get_by_role("option", name="right lung", exact=True).click()
    page.wait_for_selector("#gcxr-in-region li", timeout=30_000)
    assert "No focal consolidation" in page.locator("#gcxr-in-region").inner_text()


def test_edit_and_flag_persist_after_reload(page, app_url):
    _open(page, app_url, "demo-1")
    _select_sentence(page, "The heart is normal")
    page.locator("#gcxr-text textarea, #gcxr-text input").first.fill("The heart is mildly enlarged.")
    _act(page, "#gcxr-edit")
    assert "edited by dr.test" in page.locator("#gcxr-action-msg").inner_text()
    _select_sentence(page, "No focal consolidation")
    _act(page, "#gcxr-flag")
    page.reload()
    _open(page, app_url, "demo-1")
    report = page.locator("#gcxr-report").inner_text()
    assert "The heart is mildly enlarged." in report and "flagged: not_in_image" in report
    assert page.locator("#gcxr-report .gcxr-ungrounded").count() == 2
    compare = page.locator("#gcxr-compare")
    assert "The heart is normal in size." in compare.inner_text()
    # the changed words, marked; the flagged sentence is left out of the final report, so it is struck too
    assert compare.locator("del").first.inner_text() == "normal in size. No focal consolidation in the right lung."
    assert compare.locator("ins").first.inner_text() == "mildly enlarged."
    assert "sentence 1: dr.test" in compare.inner_text()


def test_hostile_text_is_shown_escaped_never_executed(page, app_url):
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    _open(page, app_url, "demo-2")
    _select_sentence(page, "A pacemaker")
    page.locator("#gcxr-text textarea, #gcxr-text input").first.fill(HOSTILE)
    _act(page, "#gcxr-edit", reviewer='<b onmouseover="x">eve</b>')
    page.wait_for_timeout(500)
    assert HOSTILE in page.locator("#gcxr-report").inner_text()
    assert page.locator("#gcxr-report img, #gcxr-report script, #gcxr-compare img").count() == 0
    assert page.evaluate("window.__pwned") is None and not dialogs


def _upload(page, path):
    page.locator("#gcxr-upload input[type=file]").set_input_files(path)
    page.wait_for_function("document.querySelector('#gcxr-status').innerText.includes('Opened')", timeout=60_000)
    return re.search(r"upload-[0-9a-f]+", page.locator("#gcxr-status").inner_text()).group(0)


def test_upload_png_and_dicom_without_patient_tags(page, app_url, tmp_path):
    from PIL import Image
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    png = tmp_path / "Jane_Doe_chest.png"
    Image.fromarray((np.add.outer(np.arange(96), np.arange(96)) % 256).astype(np.uint8)).save(png)
    page.goto(app_url)
    png_id = _upload(page, str(png))
    assert page.locator("#gcxr-report li").count() == 3

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.Modality = "Doe^Jane", "PID-12345", "DX"
    ds.Rows = ds.Columns = 80
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.arange(80 * 80, dtype=np.uint16).reshape(80, 80) % 4096).tobytes()
    dcm = tmp_path / "Doe_Jane.dcm"
    ds.save_as(dcm, enforce_file_format=True)
    page.goto(app_url)
    dcm_id = _upload(page, str(dcm))
    assert dcm_id != png_id
    page.goto(app_url)  # a fresh page lists both uploads in the worklist
    for cid in (png_id, dcm_id):
        page.wait_for_selector(f"#gcxr-worklist [role=gridcell]:has-text('{cid}')", timeout=30_000)
    body = page.locator("body").inner_text()
    assert "Doe" not in body and "PID-12345" not in body and "Jane" not in body


def test_bad_upload_is_refused_with_a_clear_message(page, app_url, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not an image")
    page.goto(app_url)
    page.locator("#gcxr-upload input[type=file]").set_input_files(str(bad))
    page.wait_for_function("document.querySelector('#gcxr-status').innerText.includes('upload refused')",
                           timeout=60_000)
    assert "not a PNG, JPEG or DICOM" in page.locator("#gcxr-status").inner_text()
    assert "not a PNG, JPEG or DICOM" in page.locator("#gcxr-worklist-msg").inner_text()  # beside the upload


def test_gradio_client_api(app_url):
    from gradio_client import Client
    client = Client(app_url, verbose=False)
    out = client.predict("demo-3", api_name="/generate")
    assert out["case_id"] == "demo-3" and len(out["report"]["sentences"]) == 3
    assert out["report"]["sentences"][2]["verdict"] == "ungrounded"
    res = client.predict("demo-3", "api-user", "edit", 1, "Lungs are clear.", [], "", api_name="/correct")
    assert "sentence 2 edited by api-user" in res["message"]
    assert res["review"]["sentences"][1]["text"] == "Lungs are clear."
    with pytest.raises(Exception, match="unknown reason code 'because'"):
        client.predict("demo-3", "api-user", "flag", 0, "", [], "because", api_name="/correct")
    with pytest.raises(Exception, match="unknown case 'nope'"):
        client.predict("nope", api_name="/generate")
    rows = client.predict(api_name="/worklist")
    assert any(r[0] == "demo-3" and r[1] == "in_review" for r in rows)
    with pytest.raises(Exception, match="has not been signed"):
        client.predict("demo-3", api_name="/fhir")
    for i in (0, 2):
        client.predict("demo-3", "api-user", "accept", i, "", [], "", api_name="/correct")
    client.predict("demo-3", "api-user", "sign", None, "", [], "", api_name="/correct")
    bundle = client.predict("demo-3", api_name="/fhir")
    report = bundle["entry"][0]["resource"]
    assert report["resourceType"] == "DiagnosticReport" and report["status"] == "final"
    assert "Lungs are clear." in report["conclusion"] and report["performer"][0]["display"] == "api-user"


def test_no_project_or_system_file_is_served(app_url):
    # The page is sent everything it shows (rendered images in Gradio's cache); nothing of assets/ (model weights
    # included), the source or the system is served (tests/test_app_security.py probes the data folder).
    import urllib.error
    import urllib.request
    from model import ASSETS_DIR
    for secret in ("/etc/passwd", os.path.join(os.path.dirname(ASSETS_DIR), "app.py"),
                   os.path.join(ASSETS_DIR, "cxas", "superclasses.json")):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{app_url}gradio_api/file={secret}")
        assert err.value.code in (403, 404)


def test_an_out_of_domain_upload_shows_the_banner_no_green_badge_and_is_marked(page, app_url, tmp_path):
    from PIL import Image

    bright = tmp_path / "real_film.png"  # the stand-in gate puts films brighter than the phantoms outside
    Image.fromarray((200 + np.add.outer(np.arange(96), np.arange(96)) % 50).astype(np.uint8)).save(bright)
    page.goto(app_url)
    case = _upload(page, str(bright))
    banner = page.locator("#gcxr-report .gcxr-banner")
    assert banner.count() == 1 and "Not a reading of this film" in banner.inner_text()
    assert page.locator("#gcxr-report .gcxr-grounded").count() == 0
    page.locator("#gcxr-report details summary").click()  # the text is there on purpose only
    assert page.locator("#gcxr-report .gcxr-unverified").count() == 3
    page.goto(app_url)
    row = page.locator("#gcxr-worklist [role=row]", has_text=case).first
    row.wait_for(timeout=30_000)
    assert "not a reading" in row.inner_text()
