"""The review service and the screen composition with test doubles (no browser)."""
import os

import numpy as np
import pytest

from app_fakes import make_service
from ui import build_app
from ui.screen import ViewSettings, render_view
from model.imageio import ImageReadError


@pytest.fixture
def backend(tmp_path):
    return make_service(str(tmp_path))


def test_open_is_cached(backend):
    image, analysis = backend.open("demo-0")
    assert image.shape == (128, 128) and backend.analyser.calls == 1
    again = backend.open("demo-0")
    assert again[1] is analysis and backend.analyser.calls == 1
    assert backend.store.has_generation("demo-0", "fake-0") and not backend.store.has_generation("demo-0", "v9")


def test_unknown_case_names_it(backend):
    with pytest.raises(KeyError, match="nope"):
        backend.open("nope")


def test_render_view_highlights_selected_sentence_regions(backend):
    image, analysis = backend.open("demo-0")
    state = backend.store.state("demo-0")
    plain = render_view(image, analysis, state, None, None, ViewSettings([], [], 0.4, 1.0))
    sel = render_view(image, analysis, state, 0, None, ViewSettings([], [], 0.4, 1.0))
    heart = np.kron(analysis.segmentation.masks["heart"], np.ones((4, 4), bool))  # 128 px shown at 512
    assert not np.array_equal(plain["overlay"][heart], sel["overlay"][heart])
    assert np.array_equal(plain["overlay"][~heart], sel["overlay"][~heart])
    assert plain["heatmap"] is None and sel["heatmap"].shape[0] == 512
    assert "<b>heart</b>" in sel["legend"]
    by_region = render_view(image, analysis, state, None, "right lung", ViewSettings([], [], 0.4, 1.0))
    assert "No focal consolidation" in by_region["in_region"] and "heart is normal" not in by_region["in_region"]


def test_upload_keeps_only_pixels_with_pseudonymous_id(backend, tmp_path):
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)).save(buf, format="PNG")
    case = backend.upload(buf.getvalue())
    assert case.case_id.startswith("upload-") and "Smith" not in case.case_id
    assert "Smith" not in case.image_path
    assert backend.upload(buf.getvalue()).case_id == case.case_id
    with pytest.raises(ImageReadError):
        backend.upload(b"not an image")
    buf = io.BytesIO()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(buf, format="PNG")
    with pytest.raises(ValueError, match="no lung field"):
        backend.upload(buf.getvalue())
    assert [r.case_id for r in backend.store.worklist()].count(case.case_id) == 1
    assert len(backend.store.worklist()) == 3 and len(backend.cases) == 3  # the blank image left no trace


def test_build_app_exposes_api(backend):
    demo = build_app(backend)
    names = {d.api_name for d in demo.fns.values()}
    assert {"generate", "correct", "worklist"} <= names
    # every endpoint gradio_client saw before the app was split into review/ and ui/ keeps its name; issue 16
    # added the reading layout's (next case, pan, reset view, accept all grounded, confirmed sign, window / level)
    assert names >= {"generate", "correct", "worklist", "open_case", "pick_row", "redraw", "do_upload", "do_export",
                     "use_model", "fine_tune", "cancel_fine_tune", "on_page_load", "sort_worklist", "sort_worklist_1",
                     *(f"act_{i}" if i else "act" for i in range(9)),
                     *(f"redraw_keep_text_{i}" if i else "redraw_keep_text" for i in range(5))}
    assert {"next_case", "pan", "reset_view"} <= names


def test_corrections_go_through_the_store_and_survive_a_restart(backend, tmp_path):
    backend.open("demo-0")
    st = backend.store
    with pytest.raises(ValueError, match="select a sentence"):
        st.correct("demo-0", "dr.a", "edit", index=None, text="x")
    assert "sentence 1 edited by dr.a" == st.correct("demo-0", "dr.a", "edit", index=0, text="Heart is large.")
    st.correct("demo-0", "dr.a", "flag", index=1, reason="not_in_image")
    st.correct("demo-0", "dr.a", "add", text="Small left effusion.", regions=["left lung"])
    st.correct("demo-0", "dr.a", "delete", index=2)
    state = st.state("demo-0")
    assert [s.text for s in state.current] == ["Heart is large.", "No focal consolidation in the right lung.",
                                               "Small left effusion."]
    assert state.current[1].verdict == "ungrounded" and "flagged: not_in_image" in state.notes[1][0]
    assert state.current[2].regions[0].name == "left lung" and state.current[2].verdict is None
    assert state.original_text.startswith("The heart is normal in size.")
    st.undo("demo-0", "dr.a")  # undoes the delete
    assert len(st.state("demo-0").current) == 4
    with pytest.raises(ValueError, match="unknown reason code"):
        st.correct("demo-0", "dr.a", "flag", index=0, reason="because")
    # A fresh app on the same database sees the same review.
    from app_fakes import FakeAnalyser
    from db.store import Store
    from review.service import ReviewService
    from review.store import DbReviewStore
    again = ReviewService(FakeAnalyser(), DbReviewStore(Store("sqlite:///" + str(tmp_path / "review.db"))),
                    list(backend.cases.values()), data_dir=str(tmp_path / "data"))
    again.open("demo-0")
    assert [s.text for s in again.store.state("demo-0").current][0] == "Heart is large."
    assert len([r for r in again.store.worklist() if r.case_id == "demo-0"]) == 1


def test_sign_then_export_zip(backend):
    import zipfile
    backend.open("demo-1")
    backend.store.correct("demo-1", "dr.b", "accept")
    # accept-all leaves the ungrounded sentence 3 undecided: signing confirms it (issue 16)
    assert "signed by dr.b with 1 sentence unreviewed" in backend.store.sign("demo-1", "dr.b", unreviewed=1)
    with pytest.raises(ValueError, match="signed"):
        backend.store.correct("demo-1", "dr.b", "edit", index=0, text="late edit")
    backend.store.amend("demo-1", "dr.b")
    backend.store.correct("demo-1", "dr.b", "edit", index=0, text="Amended sentence.")
    backend.store.sign("demo-1", "dr.b", unreviewed=1)
    assert backend.store.state("demo-1").final_text.startswith("Amended sentence.")
    row = next(r for r in backend.store.worklist() if r.case_id == "demo-1")
    assert row.status == "signed" and row.reviewer == "dr.b" and row.n_ungrounded == 1
    msg, path = backend.export()
    assert "exported 1 signed report" in msg
    names = zipfile.ZipFile(path).namelist()
    assert "annotation.json" in names and "pairs.jsonl" in names


def test_switching_model_generates_a_new_report_and_review(backend):
    backend.open("demo-0")
    backend.store.correct("demo-0", "dr.a", "edit", index=0, text="Edited under fake-0.")
    with pytest.raises(ValueError, match="unknown model version 'nope'"):
        backend.switch_model("nope")
    assert backend.switch_model("fake-1") == "now using model fake-1"
    _, analysis = backend.open("demo-0")
    assert analysis.report.model_version == "fake-1" and backend.analyser.calls == 1
    state = backend.store.state("demo-0")
    assert state.model_version == "fake-1" and state.current[0].text == "The heart is normal in size."
    row = next(r for r in backend.store.worklist() if r.case_id == "demo-0")
    assert row.model_version == "fake-1" and row.status == "new"


def test_cli_login_option_is_validated():
    from app import main, parse_auth
    assert parse_auth(["ann:pw", "bob:x:y"]) == [("ann", "pw"), ("bob", "x:y")]
    assert parse_auth([]) is None
    with pytest.raises(SystemExit, match="NAME:PASSWORD"):
        main(["--user", "nopassword"])


def test_cli_threads_are_set_before_the_model_loads(monkeypatch):
    torch = pytest.importorskip("torch")
    import app

    seen = []  # torch's intra-op threads when main() loads the model
    monkeypatch.setattr(app, "make_service", lambda *a, **kw: seen.append(torch.get_num_threads()) or object())
    monkeypatch.setattr(app, "launch", lambda *a, **kw: None)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert app.main([]) == 0 and app.main(["--threads", "3"]) == 0 and app.main(["--threads", "0"]) == 0
        with pytest.raises(SystemExit, match="0 or more"):
            app.main(["--threads", "-1"])
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 3, 3]  # default 1; 0 leaves the count as it was


def _fake_trainer(export_dir, init, data, out, progress):
    # Stands in for `python -m model train --from-export --progress FILE`: the same typed events
    # (model/progress.py), a tqdm-like line on stdout that must not matter, and the checkpoint folder.
    code = ("import os, sys, json; a = json.load(open(sys.argv[1] + '/annotation.json'));"
            "assert a['train'], 'no entries';"
            "from model.progress import ProgressEvent, ProgressWriter; w = ProgressWriter(sys.argv[3]);"
            "[w.write(ProgressEvent('epoch', 3, e, 2, s, 2)) for e in (1, 2) for s in (1, 2)];"
            "print('stage 3 epoch 9/9: 99%|###|', end='\\r', flush=True);"
            "ck = os.path.join(sys.argv[2], 'stage3'); os.makedirs(ck); w.write(ProgressEvent('done', checkpoint=ck))")
    import sys
    return [sys.executable, "-c", code, export_dir, out, progress]


def test_fine_tune_from_corrections_reports_progress_and_offers_the_new_model(backend, tmp_path):
    backend.finetune_cmd = _fake_trainer
    with pytest.raises(ValueError, match="--finetune-data"):
        backend.fine_tune(lambda f, d: None)
    backend.finetune_data = str(tmp_path)
    backend.models["fake-0"] = str(tmp_path)
    with pytest.raises(ValueError, match="no signed review"):
        backend.fine_tune(lambda f, d: None)
    backend.open("demo-0")
    backend.store.sign("demo-0", "dr.a", unreviewed=3)
    seen = []
    msg = backend.fine_tune(lambda f, d: seen.append(round(f, 2)))
    name = msg.split()[2]
    assert name.startswith("ft-") and name in backend.models
    assert seen[0] == 0.0 and seen[-1] == 1.0 and 0.25 in seen and 0.75 in seen
    import json
    card = json.load(open(os.path.join(backend.models[name], "model_card.json")))
    assert card["parent"] == "fake-0" and card["fine_tuned_on"] == "1 signed reviews"


def test_failed_fine_tune_says_why(backend, tmp_path):
    import sys
    backend.finetune_data, backend.models["fake-0"] = str(tmp_path), str(tmp_path)
    backend.finetune_cmd = lambda **kw: [sys.executable, "-c", "print('error: broken checkpoint'); raise SystemExit(2)"]
    backend.open("demo-0")
    backend.store.sign("demo-0", "dr.a", unreviewed=3)
    with pytest.raises(RuntimeError, match="exit code 2.*broken checkpoint"):
        backend.fine_tune(lambda f, d: None)


def test_the_signed_report_downloads_as_fhir_r4_from_the_service_and_the_screen(backend):
    import json
    from types import SimpleNamespace

    from db.fhir import validate
    from ui.handlers import Handlers
    backend.open("demo-0")
    with pytest.raises(ValueError, match="has not been signed"):
        backend.signed_report_fhir("demo-0")
    with pytest.raises(KeyError, match="unknown case"):
        backend.signed_report_fhir("no-such-case")
    backend.store.correct("demo-0", "dr.a", "flag", index=0, reason="not_in_image")
    backend.store.sign("demo-0", "dr.a", unreviewed=2)
    report = backend.signed_report_fhir("demo-0")
    validate(report)
    dr = report["entry"][0]["resource"]
    flagged = backend.state("demo-0").to_dict()["flagged_sentences"][0]["text"]
    assert dr["status"] == "final" and dr["performer"][0]["display"] == "dr.a"
    assert flagged not in dr["conclusion"], "a flagged sentence is not part of the signed report"
    c = SimpleNamespace(status="status", fhir_file="fhir_file")
    h = Handlers.__new__(Handlers)
    h.c, h.service = c, backend
    out = h.do_fhir("demo-0")
    assert json.load(open(out["fhir_file"])) == report
    assert "no FHIR report" in h.do_fhir("demo-1")["status"]
