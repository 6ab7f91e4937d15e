"""Pure limits of the review domain: login attempts per address, and the analysis queue (one at a time, in order,
each waiting request knowing its place)."""
import threading
import time

import pytest

from review.analysis_queue import AnalysisQueue
from review.throttle import LoginThrottle


def test_failed_logins_from_one_address_are_limited_and_others_are_not():
    now = [1000.0]
    t = LoginThrottle(max_failures=3, window_s=60, clock=lambda: now[0])
    for _ in range(3):
        assert t.wait("10.0.0.1") == 0
        t.failed("10.0.0.1")
    assert t.wait("10.0.0.1") == pytest.approx(60)
    assert t.wait("10.0.0.2") == 0, "another address is not affected"
    now[0] += 30
    assert t.wait("10.0.0.1") == pytest.approx(30)
    now[0] += 30
    assert t.wait("10.0.0.1") == 0, "the oldest failure has left the window"


def test_a_successful_login_clears_the_address():
    t = LoginThrottle(max_failures=2, window_s=60)
    t.failed("a")
    t.succeeded("a")
    t.failed("a")
    assert t.wait("a") == 0


def test_analyses_run_one_at_a_time_in_order_and_report_their_place():
    q = AnalysisQueue()
    gate, order, running = threading.Event(), [], []

    def job(name):
        def run():
            running.append(name)
            assert len(running) - len(order) == 1, "two analyses at once"
            if name == "heavy":
                gate.wait(5)
            order.append(name)
            return name
        return run

    heavy = q.submit("heavy", job("heavy"))
    deadline = time.time() + 5
    while not running and time.time() < deadline:
        time.sleep(0.01)
    a, b = q.submit("a", job("a")), q.submit("b", job("b"))
    assert (q.position("heavy"), q.position("a"), q.position("b")) == (0, 1, 2)
    assert q.submit("a", job("a")) is a, "a second request for a queued case joins it"
    gate.set()
    assert [f.result(5) for f in (heavy, a, b)] == ["heavy", "a", "b"] and order == ["heavy", "a", "b"]


def test_a_failed_analysis_reaches_its_caller_and_the_queue_goes_on():
    q = AnalysisQueue()

    def boom():
        raise ValueError("no lung field")
    bad = q.submit("bad", boom)
    good = q.submit("good", lambda: 42)
    with pytest.raises(ValueError, match="no lung field"):
        bad.result(5)
    assert good.result(5) == 42


# ---- the service: uploads survive a restart, analyses queue, work per image is bounded ----------------------------


class SlowAnalyser:
    """The fake analyser, but an image whose top-left pixel is white waits for `gate` (a heavy image)."""

    def __init__(self):
        from app_fakes import FakeAnalyser
        self.inner, self.gate, self.shapes = FakeAnalyser(), threading.Event(), []
        self.model_version, self.card = self.inner.model_version, self.inner.card

    def analyse(self, image, acquisition=None):
        self.shapes.append(image.shape)
        if image[0, 0] > 0.99:
            self.gate.wait(10)
        return self.inner.analyse(image)


def _service(root, analyser=None, n=3):
    import os

    from app_fakes import FakeAnalyser, make_cases
    from db.store import Store
    from review.service import ReviewService
    from review.store import DbReviewStore
    os.makedirs(os.path.join(root, "cases"), exist_ok=True)
    store = DbReviewStore(Store("sqlite:///" + os.path.join(root, "review.db")))
    return ReviewService(analyser or FakeAnalyser(), store, make_cases(os.path.join(root, "cases"), n),
                         data_dir=os.path.join(root, "data"))


def _png(arr) -> bytes:
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _ramp(h=128, w=128, bright_corner=False):
    import numpy as np
    img = np.tile(np.linspace(0, 200, w).astype(np.uint8), (h, 1))
    if bright_corner:
        img[0, 0] = 255
    return img


def test_an_uploaded_study_reopens_after_a_restart(tmp_path):
    first = _service(str(tmp_path))
    case = first.upload(_png(_ramp()))
    first.open(case.case_id)
    first.store.correct(case.case_id, "dr.a", "accept")
    again = _service(str(tmp_path))  # a new process: same database and data folder
    assert case.case_id in again.cases
    image, analysis = again.open(case.case_id)
    assert image.shape == (128, 128) and again.store.state(case.case_id).status == "in_review"
    assert [r.source for r in again.store.worklist() if r.case_id == case.case_id] == ["upload"]


def test_a_refused_upload_leaves_no_file(tmp_path):
    import numpy as np
    service = _service(str(tmp_path))
    with pytest.raises(ValueError, match="blank"):
        service.upload(_png(np.full((64, 64), 9, np.uint8)))
    assert list((tmp_path / "data" / "uploads").iterdir()) == []


def test_large_images_are_analysed_at_the_working_size_and_stored_at_full_resolution(tmp_path):
    from PIL import Image

    from model.imageio import WORK_SIDE
    analyser = SlowAnalyser()
    service = _service(str(tmp_path), analyser)
    case = service.upload(_png(_ramp(2 * WORK_SIDE + 10, 2 * WORK_SIDE)))
    assert analyser.shapes[-1] == (686, 683)  # 2058 x 2048 averaged in 3 x 3 blocks: the longer side <= 1024
    assert Image.open(case.image_path).size == (2 * WORK_SIDE, 2 * WORK_SIDE + 10)


def test_an_analysed_case_opens_while_a_heavy_analysis_runs_and_a_new_one_waits_its_turn(tmp_path):
    analyser = SlowAnalyser()
    service = _service(str(tmp_path), analyser)
    service.open("demo-0")  # analysed before the heavy upload arrives
    heavy = threading.Thread(target=service.upload, args=(_png(_ramp(bright_corner=True)),))
    heavy.start()
    deadline = time.time() + 5
    while len(analyser.shapes) < 2 and time.time() < deadline:
        time.sleep(0.01)
    t = time.perf_counter()
    service.open("demo-0")
    assert time.perf_counter() - t < 1.0, "an analysed case must not wait behind the heavy one"
    waiting = service.analyse_later("demo-1")
    assert not waiting.done() and service.queue_position("demo-1") == 1
    analyser.gate.set()
    heavy.join(10)
    waiting.result(10)
    assert service.is_analysed("demo-1")
