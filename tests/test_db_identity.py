"""Who signs what, and retries: reviewer names normalised, another's signature overridden only explicitly and on
the record, a retried correction applied once, and only non-identifying image tags stored (issue 17)."""
import threading

import pytest
from _db_support import sign_as_is, db_url, model_output, store, study_with_generation, write_png  # noqa: F401

from db.names import IdentityError, normalise_name, safe_display, session_reviewer
from db.store import Store, StoreError

# ---- names -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, why", [
    ("dr.\u200ba", "U\\+200B ZERO WIDTH SPACE"),
    ("dr.\u0430", "mixes letters of CYRILLIC and LATIN"),  # Cyrillic "а" beside Latin letters
    ("\u202edr.a", "bidirectional control character \\(U\\+202E"),
    ("dr.a\x1b[2J", "ESC"),
    ("dr\u00ada", "SOFT HYPHEN"),
    ("dr.a\ufeff", "ZERO WIDTH NO-BREAK SPACE"),
    ("dr\u2066a", "bidirectional"),
    ("dr\na", "control character"),
    ("   ", "empty"),
])
def test_look_alike_and_hidden_reviewer_names_are_refused_naming_the_character(store, raw, why):
    sid, _ = study_with_generation(store)
    with pytest.raises(StoreError, match=why):
        store.start_review(sid, raw)
    assert store.counts()["reviews"] == 0


def test_names_are_compared_after_nfkc_so_full_width_and_spacing_variants_are_one_person(store):
    sid, _ = study_with_generation(store)
    rid = store.start_review(sid, "dr.a")
    store.apply_correction(rid, "accept", "ｄｒ．ａ")  # full-width: the same reviewer after NFKC
    sign_as_is(store, rid, "  dr.a ")
    assert {c.reviewer for c in store.corrections(rid)} == {"dr.a"}
    assert normalise_name("Dr.\u00a0\u00a0Müller") == "Dr. Müller" and normalise_name("Иван Петров") == "Иван Петров"


def test_session_reviewer_takes_the_logged_in_name_and_refuses_another():
    assert session_reviewer("", "alice") == "alice"
    assert session_reviewer(None, "alice") == "alice"
    assert session_reviewer("ａｌｉｃｅ", "alice") == "alice"
    with pytest.raises(IdentityError, match="'bob' is not the logged-in user 'alice'"):
        session_reviewer("bob", "alice")
    with pytest.raises(IdentityError, match="empty"):
        session_reviewer("", None)  # without login a name must be given
    assert session_reviewer("bob", None) == "bob"


def test_safe_display_makes_escape_sequences_and_bidi_controls_visible():
    shown = safe_display("ok \x1b[31mred\u202eevil\u200b \\x1b é 中")
    assert "\x1b" not in shown and "\u202e" not in shown and "\u200b" not in shown
    assert shown == "ok \\x1b[31mred\\u202eevil\\u200b \\\\x1b é 中"


@pytest.mark.parametrize("text", ["Heart \x1b[2Jnormal.", "Heart\x00 normal.", "Heart\rnormal.", "Heart\x9bnormal."])
def test_sentence_text_with_terminal_control_characters_is_refused(store, text):
    sid, _ = study_with_generation(store)
    rid = store.start_review(sid, "dr.a")
    with pytest.raises(StoreError, match="control character"):
        store.apply_correction(rid, "edit", "dr.a", sentence_index=0, text=text)
    assert store.corrections(rid) == []


# ---- signatures --------------------------------------------------------------------------------------------------------


def _signed(store, by="alice"):
    sid, _ = study_with_generation(store)
    rid = store.start_review(sid, by)
    sign_as_is(store, rid, by)
    return rid


def test_amending_another_reviewers_signed_report_needs_an_override_with_a_note(store):
    rid = _signed(store, "alice")
    with pytest.raises(StoreError, match="signed by 'alice'; to amend another reviewer's signed report, override"):
        store.amend(rid, "bob")
    with pytest.raises(StoreError, match="needs a note"):
        store.amend(rid, "bob", override=True)
    assert store.review(rid).status == "signed" and [c.kind for c in store.corrections(rid)] == ["sign"]
    store.amend(rid, "bob", note="wrong side", override=True)
    amend = store.corrections(rid)[-1]
    assert (amend.kind, amend.reviewer, amend.override_of, amend.text) == ("amend", "bob", "alice", "wrong side")
    sign_as_is(store, rid, "bob")  # bob took it over explicitly: his re-sign needs no second override
    assert store.review(rid).signed_by == "bob"


def test_re_signing_what_another_reviewer_signed_and_amended_needs_an_override(store):
    rid = _signed(store, "alice")
    store.amend(rid, "alice")  # her own: no override
    with pytest.raises(StoreError, match="to re-sign another reviewer's signed report"):
        sign_as_is(store, rid, "bob")
    sign_as_is(store, rid, "bob", override=True, note="alice is away")
    assert store.corrections(rid)[-1].override_of == "alice"


def test_own_amendment_and_first_signature_by_a_colleague_need_no_override(store):
    sid, _ = study_with_generation(store)
    rid = store.start_review(sid, "alice")
    store.apply_correction(rid, "accept", "alice")
    sign_as_is(store, rid, "bob")  # nobody had signed: a shared review is signed by whoever finishes it
    store.amend(rid, "bob")
    assert all(c.override_of is None for c in store.corrections(rid))


# ---- idempotency -------------------------------------------------------------------------------------------------------


def test_a_retried_correction_with_the_same_key_is_applied_once(store):
    sid, _ = study_with_generation(store)
    rid = store.start_review(sid, "dr.a")
    key = "9b2f6c1e-retry-0001"
    first = store.apply_correction(rid, "add", "dr.a", text="New finding.", idempotency_key=key)
    again = store.apply_correction(rid, "add", "dr.a", text="New finding.", idempotency_key=key)
    assert first == again and len(store.corrections(rid)) == 1
    assert sum(s.text == "New finding." for s in store.final_report(rid)) == 1
    sign_key = "9b2f6c1e-sign-0001"
    assert sign_as_is(store, rid, "dr.a", idempotency_key=sign_key) == sign_as_is(store, rid, "dr.a", idempotency_key=sign_key)


def test_a_key_reused_for_another_request_is_refused(store):
    sid, _ = study_with_generation(store)
    rid = store.start_review(sid, "dr.a")
    store.apply_correction(rid, "accept", "dr.a", idempotency_key="key-000001")
    with pytest.raises(StoreError, match="was used for another request"):
        store.apply_correction(rid, "delete", "dr.a", sentence_index=0, idempotency_key="key-000001")
    with pytest.raises(StoreError, match="idempotency key must be 8 to 128"):
        store.apply_correction(rid, "accept", "dr.a", idempotency_key="k\x1b")
    assert len(store.corrections(rid)) == 1


def test_concurrent_retries_of_one_key_store_one_correction(store, db_url):
    sid, _ = study_with_generation(store)
    rid = store.start_review(sid, "dr.a")
    ids, errors = [], []

    def retry():
        try:
            with Store(db_url) as own:
                ids.append(own.apply_correction(rid, "add", "dr.a", text="Once.", idempotency_key="race-key-1"))
        except Exception as exc:  # collected: the assertion below names it
            errors.append(repr(exc))

    threads = [threading.Thread(target=retry) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == [] and len(set(ids)) == 1 and len(store.corrections(rid)) == 1


# ---- studies and image tags --------------------------------------------------------------------------------------------


def test_uploaded_studies_are_found_again_with_their_pixel_file_and_tags(db_url, tmp_path):
    png = write_png(tmp_path / "ab12cd.png", 3)
    with Store(db_url) as first:
        first.register_study("upload-ab12cd", "upload", [png], views=["frontal"],
                             tags=[{"modality": "DX", "pixel_spacing": [0.14, 0.14], "bits_stored": 12}])
    with Store(db_url) as restarted:
        (study,) = restarted.studies(source="upload")
        assert study.pseudo_id == "upload-ab12cd" and study.images[0].path == png
        assert study.images[0].tags == {"modality": "DX", "pixel_spacing": [0.14, 0.14], "bits_stored": 12}


@pytest.mark.parametrize("tags", [{"patient_name": "DOE^JANE"}, {"study_date": "20260101"},
                                  {"modality": {"nested": 1}}, {"view_position": "x" * 65}])
def test_identifying_or_odd_image_tags_are_refused(store, tmp_path, tags):
    with pytest.raises(StoreError, match="image tag"):
        store.register_study("S-9", "upload", [write_png(tmp_path / "a.png", 1)], tags=[tags])
    assert store.counts()["studies"] == 0


def test_a_database_made_before_keys_and_overrides_migrates_with_its_trail_intact(tmp_path):
    from alembic import command

    from db.engine import _alembic_config, make_engine, write_engine
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    cfg = _alembic_config()
    with write_engine(engine).begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.exec_driver_sql("INSERT INTO studies (id, pseudo_id, source, created_at) VALUES (1, 'S-1', 't', '2026-01-01')")
    engine.dispose()
    with Store(url) as store:  # migrates 0001 -> head
        assert [s.pseudo_id for s in store.studies()] == ["S-1"]
        store.add_generation(1, "m1", model_output())
        rid = store.start_review(1, "dr.a")
        assert store.apply_correction(rid, "accept", "dr.a", idempotency_key="after-migration") == \
            store.apply_correction(rid, "accept", "dr.a", idempotency_key="after-migration")
