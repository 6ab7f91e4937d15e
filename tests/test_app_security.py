"""The app as an attacker and a hospital's IT reviewer see it over HTTP (issue 17): no route serves the database, the
data folder, uploads or model files; the API signs as the logged-in user only; login attempts are limited per
address; every answer forbids framing; uploads are capped, and Gradio's cache keeps no original once its pixels are
taken or refused. Two apps per module (one open on loopback, one with --user logins), a fake analyser over a real
SQLite store in the data folder, as app.py lays it out."""
import glob
import os
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from app_fakes import FakeAnalyser, make_cases
from conftest import free_port
from db.store import Store
from model import ASSETS_DIR, PROJECT_ROOT
from review.service import ReviewService
from review.store import DbReviewStore
from ui import launch

USERS = [("alice", "alice-pw-1"), ("bob", "bob-pw-2")]


def _service(root: str, n_cases: int = 3, analyser=None) -> ReviewService:
    data = os.path.join(root, "data")
    os.makedirs(os.path.join(root, "cases"), exist_ok=True)
    os.makedirs(data, exist_ok=True)
    store = DbReviewStore(Store("sqlite:///" + os.path.join(data, "groundcxr.db")))  # as app.py: in the data folder
    return ReviewService(analyser or FakeAnalyser(), store, make_cases(os.path.join(root, "cases"), n_cases),
                         data_dir=data)


@pytest.fixture(scope="module")
def open_app(tmp_path_factory):
    service = _service(str(tmp_path_factory.mktemp("open")))
    port = free_port()
    demo = launch(service, port=port, block=False)
    yield service, f"http://127.0.0.1:{port}"
    demo.close()


@pytest.fixture(scope="module")
def login_app(tmp_path_factory):
    service = _service(str(tmp_path_factory.mktemp("login")))
    port = free_port()
    demo = launch(service, port=port, auth=USERS, block=False)
    yield service, f"http://127.0.0.1:{port}"
    demo.close()


def _sensitive_files(service) -> list[str]:
    """Everything that must never be served: the database and its WAL, a stored upload, an export, the model
    weights, the project's source."""
    service.open("demo-0")
    service.store.correct("demo-0", "dr.a", "accept")
    service.store.sign("demo-0", "dr.a", unreviewed=1)  # accept-all leaves the ungrounded one
    _, export_zip = service.export()
    img = np.tile(np.arange(128, dtype=np.uint8), (128, 1))
    upload = service.upload(_png_bytes(img)).image_path
    db = os.path.join(service.data_dir, "groundcxr.db")
    weights = sorted(glob.glob(os.path.join(ASSETS_DIR, "model", "*")))[:2]
    found = [db, db + "-wal", upload, export_zip, *weights, os.path.join(PROJECT_ROOT, "app.py")]
    return [p for p in found if os.path.isfile(p)]


def _png_bytes(arr) -> bytes:
    import io
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_no_file_route_serves_the_database_data_folder_uploads_or_model(open_app):
    service, url = open_app
    files = _sensitive_files(service)
    assert any(f.endswith("groundcxr.db-wal") for f in files) and any("/uploads/" in f for f in files)
    served = {}
    for path in files:
        for route in ("/gradio_api/file=", "/file="):
            r = httpx.get(url + route + path, timeout=10)
            if r.status_code == 200:
                served[route + path] = len(r.content)
    assert not served, f"served: {served}"


def test_every_answer_forbids_framing_and_sets_a_content_security_policy(open_app):
    _, url = open_app
    for path in ("/", "/gradio_api/info", "/gradio_api/file=/etc/passwd"):
        r = httpx.get(url + path, timeout=10)
        assert r.headers["x-frame-options"] == "DENY", path
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
        assert r.headers["x-content-type-options"] == "nosniff"


def test_an_upload_over_100_mb_is_refused_by_the_upload_route(open_app):
    _, url = open_app
    chunk = b"\0" * (1 << 20)

    def body():
        for _ in range(101):
            yield chunk
    files = {"files": ("big.png", b"".join(body()), "image/png")}
    r = httpx.post(url + "/gradio_api/upload", files=files, timeout=60)
    assert r.status_code == 413, r.text[:200]


def test_the_screen_says_names_are_not_verified_without_login(open_app, login_app):
    assert "Names are not verified" in httpx.get(open_app[1] + "/config", timeout=10).text
    client = httpx.Client(base_url=login_app[1], timeout=10)
    assert client.post("/login", data={"username": "alice", "password": "alice-pw-1"}).status_code == 200
    assert "Names are not verified" not in client.get("/config").text


def _client(url, user):
    from gradio_client import Client
    return Client(url, auth=user, verbose=False, download_files=False)


def test_with_login_the_api_signs_as_the_logged_in_user_only(login_app):
    service, url = login_app
    alice = _client(url, USERS[0])
    alice.predict("demo-1", api_name="/generate")
    with pytest.raises(Exception, match="reviewer 'bob' is not the logged-in user 'alice'"):
        alice.predict("demo-1", "bob", "accept", None, "", [], "", api_name="/correct")
    out = alice.predict("demo-1", "", "accept", None, "", [], "", api_name="/correct")
    assert out["message"].endswith("by alice")
    assert service.store.state("demo-1").reviewer == "alice"


def test_amending_another_reviewers_signature_through_the_api_needs_an_override(login_app):
    service, url = login_app
    alice, bob = _client(url, USERS[0]), _client(url, USERS[1])
    alice.predict("demo-2", api_name="/generate")
    alice.predict("demo-2", "alice", "sign", None, "", [], "", False, "", 3, api_name="/correct")
    with pytest.raises(Exception, match="signed by 'alice'"):
        bob.predict("demo-2", "", "amend", None, "", [], "", api_name="/correct")
    out = bob.predict("demo-2", "", "amend", None, "wrong side", [], "", True, api_name="/correct")
    assert "overriding" in out["message"]


def test_a_retried_api_correction_with_its_key_is_applied_once(login_app):
    service, url = login_app
    bob = _client(url, USERS[1])
    bob.predict("demo-0", api_name="/generate")
    args = ("demo-0", "", "add", None, "Retried finding.", [], "", False, "retry-key-0001")
    bob.predict(*args, api_name="/correct")
    again = bob.predict(*args, api_name="/correct")
    assert [s["text"] for s in again["review"]["sentences"]].count("Retried finding.") == 1


def test_login_attempts_are_limited_per_address(tmp_path):
    service = _service(str(tmp_path))
    port = free_port()
    demo = launch(service, port=port, auth=USERS, block=False)
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        codes = [client.post("/login", data={"username": "alice", "password": f"guess-{i}"}).status_code
                 for i in range(6)]
        assert codes == [400] * 5 + [429]
        right = client.post("/login", data={"username": "alice", "password": "alice-pw-1"})
        assert right.status_code == 429 and "too many failed logins" in right.text, "locked even with the password"
    finally:
        demo.close()


def test_an_upload_leaves_no_original_in_gradios_cache_and_a_refused_one_leaves_nothing(open_app, tmp_path):
    from gradio.utils import get_upload_folder
    from gradio_client import handle_file
    service, url = open_app
    client = _client(url, None)
    good = tmp_path / "DOE_JANE_19700101.png"
    good.write_bytes(_png_bytes(np.tile(np.arange(0, 256, 2, dtype=np.uint8), (128, 1)).T.copy()))
    blank = tmp_path / "SMITH_JOHN_blank.png"
    blank.write_bytes(_png_bytes(np.full((128, 128), 7, np.uint8)))  # the analyser refuses a blank image
    before = set(os.listdir(os.path.join(service.data_dir, "uploads")))
    for path in (good, blank):
        client.predict(handle_file(str(path)), [], [], 0.35, 1.0, api_name="/do_upload")
    cached = [p for p in glob.glob(os.path.join(get_upload_folder(), "**", "*"), recursive=True)
              if "DOE_JANE" in p or "SMITH_JOHN" in p]
    assert cached == [], "original uploads are still in Gradio's cache"
    added = set(os.listdir(os.path.join(service.data_dir, "uploads"))) - before
    assert len(added) == 1 and all(name.startswith("upload-") for name in added), added


def test_eight_concurrent_api_clients_each_get_their_answers(tmp_path):
    service = _service(str(tmp_path), n_cases=8)
    port = free_port()
    demo = launch(service, port=port, block=False)
    errors, times = [], []

    def reviewer(i):
        try:
            c = _client(f"http://127.0.0.1:{port}", None)
            t = time.perf_counter()
            c.predict(f"demo-{i}", api_name="/generate")
            for n in range(3):
                c.predict(f"demo-{i}", f"dr.{i}", "add", None, f"Finding {n}.", [], "", api_name="/correct")
            c.predict(f"demo-{i}", f"dr.{i}", "sign", None, "", [], "", False, "", 3, api_name="/correct")
            times.append(time.perf_counter() - t)
        except Exception as exc:  # collected: the assertion names it
            errors.append(f"{i}: {exc!r}")

    try:
        threads = [threading.Thread(target=reviewer, args=(i,)) for i in range(8)]
        [t.start() for t in threads]
        [t.join(120) for t in threads]
    finally:
        demo.close()
    assert errors == [] and len(times) == 8
    rows = {r.case_id: r for r in service.store.worklist()}
    assert all(rows[f"demo-{i}"].status == "signed" and rows[f"demo-{i}"].reviewer == f"dr.{i}" for i in range(8))
