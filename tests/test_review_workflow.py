"""Issue 16 at the store and service level: a decision on every sentence before signing, "accept all grounded",
what a flag means in the final report, the API and the export, and re-grounding of a reviewer's words."""
import datetime as dt
import json

import pytest
from _db_support import db_url, model_output, store, study_with_generation, write_png  # noqa: F401

from app_fakes import make_service
from db.export import export
from db.records import StoreError
from db.replay import CorrectionRecord, replay
from db.reviews import UnreviewedError

# ---- signing: a decision on every sentence -------------------------------------------------------------------------


def test_sign_is_refused_while_a_sentence_is_undecided_and_names_flagged_and_ungrounded_ones(store):
    sid, _ = study_with_generation(store, n_sentences=4, ungrounded=(1,))
    rid = store.start_review(sid, "dr.a")
    store.apply_correction(rid, "accept", "dr.a", sentence_index=0)
    store.apply_correction(rid, "flag", "dr.a", sentence_index=3, reason_code="not_in_image")
    with pytest.raises(UnreviewedError) as err:
        store.sign(rid, "dr.a")
    msg = str(err.value)
    assert "2 sentences not reviewed yet" in msg and "sign with 2 unreviewed" in msg
    assert "flagged, left out of the signed report: #4" in msg and "ungrounded: #2" in msg
    assert err.value.check.undecided == [1, 2]
    assert store.review(rid).status == "in_review" and [c.kind for c in store.corrections(rid)] == ["accept", "flag"]


def test_a_confirmation_for_another_count_is_refused(store):
    sid, _ = study_with_generation(store)
    rid = store.start_review(sid, "dr.a")
    with pytest.raises(UnreviewedError, match="you confirmed 2; the report has changed since"):
        store.sign(rid, "dr.a", unreviewed=2)  # three are undecided


def test_sign_with_n_unreviewed_is_recorded_with_the_sentences_left(store):
    sid, _ = study_with_generation(store)
    rid = store.start_review(sid, "dr.a")
    store.apply_correction(rid, "edit", "dr.a", sentence_index=1, text="No effusion.")
    store.sign(rid, "dr.a", unreviewed=2)
    sign = store.corrections(rid)[-1]
    assert sign.kind == "sign" and sign.sentences == [0, 2]


def test_every_sentence_decided_signs_without_confirmation(store):
    sid, _ = study_with_generation(store)
    rid = store.start_review(sid, "dr.a")
    store.apply_correction(rid, "accept", "dr.a", sentence_index=0)
    store.apply_correction(rid, "delete", "dr.a", sentence_index=1)
    store.apply_correction(rid, "edit", "dr.a", sentence_index=2, text="No pneumothorax seen.")
    store.apply_correction(rid, "add", "dr.a", text="Sternotomy wires.")
    store.sign(rid, "dr.a")
    assert store.review(rid).status == "signed" and store.corrections(rid)[-1].sentences == []


def test_a_relink_alone_is_not_a_decision(store):
    sid, _ = study_with_generation(store, n_sentences=1, ungrounded=())
    rid = store.start_review(sid, "dr.a")
    store.apply_correction(rid, "relink", "dr.a", sentence_index=0, regions=["heart"])
    assert store.sign_check(rid).undecided == [0]


# ---- accept all grounded -------------------------------------------------------------------------------------------


def test_bulk_accept_decides_only_undecided_grounded_sentences_and_records_them(store):
    sid, _ = study_with_generation(store, n_sentences=5, ungrounded=(1,))
    rid = store.start_review(sid, "dr.a")
    store.apply_correction(rid, "flag", "dr.a", sentence_index=2, reason_code="wrong_location")
    store.apply_correction(rid, "accept", "dr.a")
    bulk = store.corrections(rid)[-1]
    assert bulk.sentence_index is None and bulk.sentences == [0, 3, 4]
    final = {s.index: s for s in store.final_report(rid)}
    assert [i for i, s in final.items() if s.accepted] == [0, 3, 4]
    assert all(final[i].accepted_in_bulk for i in (0, 3, 4))
    assert not final[1].accepted and final[2].flagged and not final[2].accepted
    assert store.sign_check(rid).undecided == [1]
    with pytest.raises(StoreError, match="no undecided grounded sentence to accept in bulk"):
        store.apply_correction(rid, "accept", "dr.a")


def test_bulk_accept_never_decides_unverified_sentences(store):
    out = model_output(2, ungrounded=())
    for s in out["sentences"]:
        s["verdict"] = "unverified"  # a film outside the model's domain
    sid = store.register_study("S-ood", "test")
    store.add_generation(sid, "m1", out)
    rid = store.start_review(sid, "dr.a")
    with pytest.raises(StoreError, match="accepted one by one"):
        store.apply_correction(rid, "accept", "dr.a")


def test_a_bulk_accept_stored_before_migration_0004_still_accepts_everything_standing():
    sentences = model_output(3)["sentences"]
    at = dt.datetime(2026, 12, 1)
    legacy = [CorrectionRecord(1, 1, "flag", "dr.a", at, 2, None, "other"),
              CorrectionRecord(2, 1, "accept", "dr.a", at)]  # no `sentences`: the old meaning
    final = replay(sentences, legacy)
    assert [s.accepted for s in final] == [True, True, False] and not final[0].accepted_in_bulk


# ---- a flag: not part of the signed report -------------------------------------------------------------------------


def test_a_flagged_sentence_is_out_of_the_final_text_and_the_export_report_but_a_negative_pair(store, tmp_path):
    image = write_png(tmp_path / "S-1.png", 1)
    sid, _ = study_with_generation(store, images=[image])
    rid = store.start_review(sid, "dr.a")
    store.apply_correction(rid, "flag", "dr.a", sentence_index=1, reason_code="not_in_image")
    store.apply_correction(rid, "accept", "dr.a")
    texts = [s["text"] for s in model_output()["sentences"]]
    assert store.final_text(rid) == f"{texts[0]} {texts[2]}"
    store.sign(rid, "dr.a")
    export(store, str(tmp_path / "out"))
    ann = json.load(open(tmp_path / "out" / "annotation.json"))
    assert [e["report"] for split in ann.values() for e in split] == [f"{texts[0]} {texts[2]}"]
    pairs = {p["sentence_index"]: p for p in map(json.loads, open(tmp_path / "out" / "pairs.jsonl"))}
    assert pairs[1]["kind"] == "flagged" and pairs[1]["corrected_sentence"] is None
    assert pairs[1]["model_sentence"] == texts[1] and pairs[1]["reason_code"] == "not_in_image"


# ---- the review service: re-grounding and the API's view ----------------------------------------------------------


@pytest.fixture
def service(tmp_path):
    return make_service(str(tmp_path))


def test_an_edit_is_regrounded_on_its_new_words(service):
    service.open("demo-0")
    service.apply("demo-0", "dr.a", "edit", 0, "There is a small left lung nodule.")
    state = service.state("demo-0")
    s = state.current[0]
    assert 0 in state.regrounded and [r.name for r in s.regions] == ["left lung"]  # not the model's "heart"
    assert s.verdict == "grounded" and s.reasons == ["the words point to left lung"]
    left = service.open("demo-0")[1].segmentation.masks["left lung"]
    assert state.heatmaps[0][left].min() > 0 and state.heatmaps[0][~left].max() == 0  # the new words' evidence
    service.state("demo-0")
    assert service.analyser.grounded == 1  # drawn again: the re-grounding is cached, not recomputed


def test_an_added_sentence_starts_without_the_selected_sentences_regions(service):
    service.open("demo-0")
    service.apply("demo-0", "dr.a", "add", None, "Sternotomy wires are present.")
    state = service.state("demo-0")
    added = state.current[-1]
    assert added.text == "Sternotomy wires are present." and added.regions == []
    assert added.verdict == "ungrounded" and added.index in state.regrounded
    assert state.marks[added.index] == "added"


def test_regrounding_without_an_analysis_leaves_the_edit_ungraded(service):
    service.open("demo-1")
    service.apply("demo-1", "dr.a", "edit", 0, "Heart is enlarged.")
    raw = service.store.state("demo-1")
    assert raw.current[0].verdict is None and raw.current[0].regions == []


def test_the_api_review_leaves_flagged_sentences_out_of_the_final_report(service):
    service.open("demo-0")
    service.apply("demo-0", "dr.a", "flag", 2, reason="not_in_image")
    review = service.state("demo-0").to_dict()
    assert "pacemaker" not in review["final_report"]
    assert review["flagged_sentences"] == [{"index": 2, "text": "A pacemaker is present.",
                                            "reason_code": "not_in_image", "note": None}]
    assert review["sentences"][2]["state"] == "flagged" and review["undecided"] == [0, 1]


def test_signing_through_the_service_needs_the_confirmation(service):
    service.open("demo-0")
    with pytest.raises(ValueError, match="sign with 3 unreviewed"):
        service.apply("demo-0", "dr.a", "sign")
    assert "with 3 sentences unreviewed" in service.apply("demo-0", "dr.a", "sign", unreviewed=3)


def test_a_refused_upload_leaves_nothing_on_disk(service):
    import io
    import os

    import numpy as np
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(buf, format="PNG")  # blank: the analysis refuses it
    with pytest.raises(ValueError, match="no lung field"):
        service.upload(buf.getvalue())
    assert os.listdir(os.path.join(service.data_dir, "uploads")) == []
    assert not any(c.startswith("upload-") for c in service.cases)


def test_only_the_classes_the_segmenter_drew_are_offered_and_the_legend_names_it(service):
    from ui.screen import DEFAULT_VIEW, case_view, produced_classes
    _, analysis = service.open("demo-0")
    assert produced_classes(analysis) == ["heart", "left lung", "right lung"]
    v = case_view(service, "demo-0", 0, None, DEFAULT_VIEW)
    assert "fake segmenter" in v["legend"] and "fake segmenter" in v["overlay_label"]
    assert "CXAS" not in v["overlay_label"]


def test_the_model_card_is_a_card_not_json():
    from viewer.model_card import model_card_html
    h = model_card_html("m<1>", {"metrics": {"ce_f1": 0.81923, "notes": 'a "quoted" word'},
                                 "data": ["phantoms", "real"]}, "Not for clinical use.")
    assert "&amp;quot;" not in h and "{" not in h and "ce f1" in h and "0.819" in h
    assert "m&lt;1&gt;" in h and "phantoms, real" in h


def test_a_refused_sign_also_lists_the_reviewers_words_that_regrounded_ungrounded(service):
    service.open("demo-0")
    service.apply("demo-0", "dr.a", "edit", 0, "Sternotomy wires are present.")  # names no region: ungrounded
    with pytest.raises(UnreviewedError, match='re-grounded on the reviewer.s words and ungrounded: #1 "Sternotomy'):
        service.apply("demo-0", "dr.a", "sign")
