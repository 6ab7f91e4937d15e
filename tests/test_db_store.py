"""The review store: migrations, state machine, every correction kind, undo, validation, atomic writes."""
import pytest
from _db_support import sign_as_is, db_url, model_output, store, study_with_generation, write_png  # noqa: F401
from sqlalchemy import inspect, text

from db.engine import current_revision, head_revision, make_engine, migrate
from db.replay import REASON_CODES
from db.store import NotFoundError, Store, StoreError

# ---- migrations and engine -------------------------------------------------------------------------------------------


def test_migrations_apply_on_empty_db_and_are_idempotent(db_url):
    engine = make_engine(db_url)
    assert current_revision(engine) is None
    assert migrate(engine) == head_revision()
    tables = set(inspect(engine).get_table_names())
    assert {"studies", "images", "model_versions", "generations", "reviews", "corrections", "exports",
            "alembic_version"} <= tables
    migrate(engine)  # again: nothing to do, nothing breaks
    with Store(db_url) as again:  # and the store's own start-up migration
        assert again.counts()["studies"] == 0
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    engine.dispose()


def test_migrated_schema_matches_the_models(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from db.models import Base
    engine = make_engine(db_url)
    migrate(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == [], "db/models.py changed without a migration"


def test_sqlite_connections_get_wal_foreign_keys_and_busy_timeout(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    engine.dispose()


def test_bad_urls_are_named():
    with pytest.raises(ValueError, match="not a database URL"):
        make_engine("no-such-scheme")
    for memory in ("sqlite://", "sqlite:///:memory:"):
        with pytest.raises(ValueError, match="in-memory SQLite database cannot hold a review store"):
            make_engine(memory)
    with pytest.raises(ValueError, match="folder does not exist"):
        make_engine("sqlite:////nonexistent-dir-xyz/a.db")


# ---- studies, images, generations ------------------------------------------------------------------------------------


def test_register_study_hashes_images_and_dedups(store, tmp_path):
    a, b = write_png(tmp_path / "a_pa.png", 1), write_png(tmp_path / "b_lateral.png", 2)
    sid = store.register_study("S-1", "test", [a, b])
    assert store.register_study("S-1", "test", [a, b]) == sid  # idempotent
    info = store.study(sid)
    assert [(i.view, i.width, i.height) for i in info.images] == [("frontal", 8, 8), ("lateral", 8, 8)]
    assert len({i.sha256 for i in info.images}) == 2
    copy = tmp_path / "copy.png"
    copy.write_bytes(open(a, "rb").read())
    with pytest.raises(StoreError, match="already registered to study 'S-1'"):
        store.register_study("S-2", "test", [str(copy)])
    assert store.counts()["studies"] == 1, "the refused study left a row behind"
    with pytest.raises(StoreError, match="image file not found"):
        store.register_study("S-3", "test", [str(tmp_path / "missing.png")])


def test_generation_is_stored_verbatim_and_validated(store):
    sid = store.register_study("S-1", "test")
    out = model_output(4, ungrounded=(1, 3))
    gid = store.add_generation(sid, "m1", out)
    g = store.generation(gid)
    assert g.output == out and g.n_ungrounded == 2 and g.model_version == "m1"
    with pytest.raises(StoreError, match="ReportOutput.to_dict"):
        store.add_generation(sid, "m1", {"sentences": []})
    bad = model_output()
    bad["sentences"][0]["verdict"] = "maybe"
    with pytest.raises(StoreError, match="unknown verdicts"):
        store.add_generation(sid, "m1", bad)
    dup = model_output()
    dup["sentences"][1]["index"] = 0
    with pytest.raises(StoreError, match="not unique"):
        store.add_generation(sid, "m1", dup)
    nan = model_output()
    nan["sentences"][0]["regions"][0]["score"] = float("nan")
    with pytest.raises(StoreError, match="not plain JSON"):
        store.add_generation(sid, "m1", nan)
    extra = {**model_output(), "heatmap_dir": "/tmp/h"}  # keys beyond ReportOutput are kept, not dropped
    assert store.generation(store.add_generation(sid, "m1", extra)).output == extra
    with pytest.raises(NotFoundError, match="no study with id 999"):
        store.add_generation(999, "m2", model_output())
    with pytest.raises(StoreError, match="elsewhere.png is not a registered image of study"):
        store.add_generation(sid, "m2", model_output(), image_path="elsewhere.png")
    with pytest.raises(NotFoundError):
        store.model_version("m2")  # a refused generation registers no model version either
    assert store.counts()["generations"] == 2


def test_model_versions_keep_path_parent_and_card(store, tmp_path):
    store.register_model("base", str(tmp_path))
    store.register_model("ft1", str(tmp_path / "ft1"), parent="base", card={"metrics": {"f1": 0.5}})
    mv = store.model_version("ft1")
    assert mv.parent == "base" and mv.card["metrics"]["f1"] == 0.5
    with pytest.raises(StoreError, match="registered for"):
        store.register_model("ft1", str(tmp_path / "other"))
    with pytest.raises(StoreError, match="parent model version 'nope'"):
        store.register_model("ft2", parent="nope")


# ---- state machine ---------------------------------------------------------------------------------------------------


def test_review_state_machine(store):
    sid, _ = study_with_generation(store)
    rid = store.start_review(sid, "dr.a")
    assert store.start_review(sid, "dr.b") == rid, "a second reviewer must share the review, not fork it"
    assert store.review(rid).status == "new"
    store.apply_correction(rid, "edit", "dr.a", sentence_index=0, text="Heart size is normal.")
    assert store.review(rid).status == "in_review"
    sign_as_is(store, rid, "dr.a")
    r = store.review(rid)
    assert r.status == "signed" and r.signed_at is not None
    with pytest.raises(StoreError, match="signed; amend it first"):
        store.apply_correction(rid, "delete", "dr.a", sentence_index=2)
    with pytest.raises(StoreError, match="signed; amend it first"):
        store.undo_last(rid, "dr.a")
    with pytest.raises(StoreError, match="signed already"):
        sign_as_is(store, rid, "dr.a")
    store.amend(rid, "dr.b", note="laterality", override=True)  # dr.a signed it: an explicit override
    assert store.review(rid).status == "amended"
    with pytest.raises(StoreError, match="not signed: there is nothing to amend"):
        store.amend(rid, "dr.b")
    with pytest.raises(StoreError, match="nothing to undo since it was last signed or amended"):
        store.undo_last(rid, "dr.b")  # the signed edit is changed by a correction, not silently undone
    store.apply_correction(rid, "delete", "dr.b", sentence_index=2)
    sign_as_is(store, rid, "dr.b")
    assert store.review(rid).status == "signed"
    kinds = [(c.kind, c.reviewer) for c in store.corrections(rid)]
    assert kinds == [("edit", "dr.a"), ("sign", "dr.a"), ("amend", "dr.b"), ("delete", "dr.b"), ("sign", "dr.b")]


def test_sign_straight_from_new_needs_the_unreviewed_count_confirmed(store):
    # Issue 16 changed this: signing an untouched report used to accept it silently.
    sid, _ = study_with_generation(store)
    rid = store.start_review(sid, "dr.a")
    n = len(model_output()["sentences"])
    with pytest.raises(StoreError, match=f"{n} sentences not reviewed yet.*sign with {n} unreviewed"):
        store.sign(rid, "dr.a")
    assert store.review(rid).status == "new"
    store.sign(rid, "dr.a", unreviewed=n)
    assert store.final_text(rid) == model_output()["report"]
    assert store.corrections(rid)[-1].sentences == list(range(n))


def test_start_review_needs_a_generation(store):
    sid = store.register_study("S-empty", "test")
    with pytest.raises(StoreError, match="no generation to review"):
        store.start_review(sid, "dr.a")
    with pytest.raises(NotFoundError):
        store.start_review(12345, "dr.a")


# ---- correction kinds ------------------------------------------------------------------------------------------------


def test_every_correction_kind_shapes_the_final_report(store):
    sid, gid = study_with_generation(store, n_sentences=5)
    rid = store.start_review(sid, "dr.a")
    store.apply_correction(rid, "edit", "dr.a", sentence_index=1, text="There is a right pleural effusion.")
    store.apply_correction(rid, "delete", "dr.a", sentence_index=4)
    added = store.apply_correction(rid, "add", "dr.a", text="Small hiatal hernia.", regions=["heart"])
    store.apply_correction(rid, "flag", "dr.a", sentence_index=2, reason_code="not_in_image", text="no PTX seen")
    store.apply_correction(rid, "relink", "dr.a", sentence_index=3, regions=["mediastinum", "heart", "heart"])
    store.apply_correction(rid, "accept", "dr.a", sentence_index=0)
    final = {s.index: s for s in store.final_report(rid)}
    assert sorted(final) == [0, 1, 2, 3, 5], "deleted sentence 4 hidden, the added one got the next index"
    assert final[1].text == "There is a right pleural effusion." and final[1].state == "edited"
    assert final[1].model_text == "There is a left pleural effusion."
    assert final[5].origin == "reviewer" and final[5].regions == ["heart"] and final[5].state == "added"
    assert final[5].correction_ids == [added]
    assert final[2].state == "flagged" and final[2].verdict == "ungrounded" and final[2].reason_code == "not_in_image"
    assert final[2].note == "no PTX seen"
    assert final[3].regions == ["mediastinum", "heart"] and final[3].regions_by == "reviewer"
    assert final[0].state == "accepted" and final[0].last_by == "dr.a"
    store.apply_correction(rid, "relink", "dr.a", sentence_index=0, regions=[])  # "about no region" is a link too
    assert store.final_report(rid)[0].regions == [] and store.final_report(rid)[0].regions_by == "reviewer"
    deleted = [s for s in store.final_report(rid, include_deleted=True) if s.deleted]
    assert [s.index for s in deleted] == [4]
    # The model's output is never touched.
    assert store.generation(gid).output == model_output(5)


def test_accept_without_index_accepts_every_standing_sentence(store):
    sid, _ = study_with_generation(store)
    rid = store.start_review(sid, "dr.a")
    store.apply_correction(rid, "flag", "dr.a", sentence_index=1, reason_code="wrong_laterality")
    store.apply_correction(rid, "accept", "dr.a")
    assert [s.state for s in store.final_report(rid)] == ["accepted", "flagged", "accepted"]


def test_edit_clears_a_flag_and_accept_clears_it_too(store):
    sid, _ = study_with_generation(store)
    rid = store.start_review(sid, "dr.a")
    store.apply_correction(rid, "flag", "dr.a", sentence_index=1, reason_code="wrong_laterality")
    store.apply_correction(rid, "edit", "dr.a", sentence_index=1, text="Right effusion.")
    assert store.final_report(rid)[1].state == "edited" and store.final_report(rid)[1].reason_code is None
    store.apply_correction(rid, "flag", "dr.a", sentence_index=2, reason_code="other")
    store.apply_correction(rid, "accept", "dr.a", sentence_index=2)
    assert store.final_report(rid)[2].state == "accepted"


def test_undo_appends_reverts_newest_first(store):
    sid, _ = study_with_generation(store)
    rid = store.start_review(sid, "dr.a")
    e = store.apply_correction(rid, "edit", "dr.a", sentence_index=0, text="Edited.")
    a = store.apply_correction(rid, "add", "dr.a", text="Added.")
    r1 = store.undo_last(rid, "dr.b")
    assert [s.index for s in store.final_report(rid)] == [0, 1, 2]
    r2 = store.undo_last(rid, "dr.b")
    assert store.final_text(rid) == model_output()["report"]
    with pytest.raises(StoreError, match="nothing to undo"):
        store.undo_last(rid, "dr.b")
    trail = store.corrections(rid)
    assert [(c.id, c.kind, c.target_id) for c in trail] == [(e, "edit", None), (a, "add", None),
                                                           (r1, "revert", a), (r2, "revert", e)]
    again = store.apply_correction(rid, "add", "dr.a", text="Added again.")
    assert store.final_report(rid)[-1].index == 4, "an undone add's index is never reused"
    assert store.undo_last(rid, "dr.a") > again


def test_validation_errors_name_the_problem_and_write_nothing(store):
    sid, _ = study_with_generation(store)
    rid = store.start_review(sid, "dr.a")
    before = store.counts()["corrections"]
    cases = [
        (dict(kind="edit", sentence_index=7, text="x"), "unknown sentence index 7 .* sentences \\[0, 1, 2\\]"),
        (dict(kind="edit", sentence_index=0, text="   "), "text is empty"),
        (dict(kind="add", text="x" * 2001), "2001 characters; the limit is 2000"),
        (dict(kind="add", text="a\x00b"), "NUL"),
        (dict(kind="rewrite", sentence_index=0), "unknown correction kind 'rewrite'"),
        (dict(kind="revert", sentence_index=0), "unknown correction kind"),
        (dict(kind="flag", sentence_index=0, reason_code="because"), "unknown reason code 'because'"),
        (dict(kind="flag", sentence_index=0), "unknown reason code None"),
        (dict(kind="relink", sentence_index=0, regions=["left lung", "spleen"]), "not CXAS .*spleen"),
        (dict(kind="relink", sentence_index=0, regions="heart"), "must be a list of CXAS names, got str"),
        (dict(kind="delete", sentence_index=None), "unknown sentence index None"),
    ]
    for kwargs, message in cases:
        kind = kwargs.pop("kind")
        with pytest.raises(StoreError, match=message):
            store.apply_correction(rid, kind, "dr.a", **kwargs)
    with pytest.raises(StoreError, match="reviewer is empty"):
        store.apply_correction(rid, "accept", " ", sentence_index=0)
    with pytest.raises(NotFoundError, match="no review with id 99"):
        store.apply_correction(99, "accept", "dr.a", sentence_index=0)
    store.apply_correction(rid, "delete", "dr.a", sentence_index=0)
    with pytest.raises(StoreError, match="unknown sentence index 0"):
        store.apply_correction(rid, "edit", "dr.a", sentence_index=0, text="back from the dead")
    assert store.counts()["corrections"] == before + 1
    assert store.review(rid).status == "in_review"
    assert set(REASON_CODES) == {"not_in_image", "wrong_laterality", "wrong_location", "wrong_severity", "other"}


def test_cannot_sign_an_empty_report(store):
    sid, _ = study_with_generation(store, n_sentences=1, ungrounded=())
    rid = store.start_review(sid, "dr.a")
    store.apply_correction(rid, "delete", "dr.a", sentence_index=0)
    with pytest.raises(StoreError, match="no sentence left"):
        sign_as_is(store, rid, "dr.a")


def test_hostile_text_is_stored_verbatim(store):
    sid, _ = study_with_generation(store)
    rid = store.start_review(sid, "dr.a")
    hostile = "<script>alert('x')</script> <img src=x onerror=alert(1)> ' OR 1=1; -- é 肺"
    store.apply_correction(rid, "edit", "dr.a", sentence_index=0, text=hostile)
    store.apply_correction(rid, "flag", "dr.a", sentence_index=1, reason_code="other", text=hostile)
    final = store.final_report(rid)
    assert final[0].text == hostile and final[1].note == hostile


def test_a_failure_inside_a_write_leaves_no_partial_rows(store, monkeypatch):
    sid, _ = study_with_generation(store)
    rid = store.start_review(sid, "dr.a")
    original = Store._append

    def append_then_crash(self, s, r, kind, reviewer, **fields):
        original(self, s, r, kind, reviewer, **fields)  # the row is flushed and the status moved ...
        raise RuntimeError("disk on fire")  # ... then the transaction dies

    monkeypatch.setattr(Store, "_append", append_then_crash)
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.apply_correction(rid, "edit", "dr.a", sentence_index=0, text="lost")
    with pytest.raises(RuntimeError):
        sign_as_is(store, rid, "dr.a")
    monkeypatch.undo()
    assert store.corrections(rid) == []
    assert store.review(rid).status == "new"
    assert store.final_text(rid) == model_output()["report"]


# ---- worklist and signed versions ------------------------------------------------------------------------------------


def test_worklist_orders_and_filters(store):
    a, _ = study_with_generation(store, "S-a", ungrounded=())
    b, _ = study_with_generation(store, "S-b", ungrounded=(0, 1, 2))
    c, _ = study_with_generation(store, "S-c", ungrounded=(2,))
    store.register_study("S-d", "test")  # no generation yet
    rid = store.start_review(c, "dr.c")
    sign_as_is(store, rid, "dr.c")
    items = store.worklist()
    assert [i.pseudo_id for i in items] == ["S-b", "S-c", "S-a", "S-d"]
    assert [i.n_ungrounded for i in items] == [3, 1, 0, 0]
    signed = store.worklist(status="signed")
    assert [(i.pseudo_id, i.reviewer, i.model_version, i.review_id) for i in signed] == [("S-c", "dr.c", "m1", rid)]
    assert [i.status for i in store.worklist(order="oldest")] == ["new", "new", "signed", "new"]
    assert store.worklist(order="newest", limit=1)[0].pseudo_id == "S-d"
    with pytest.raises(StoreError, match="unknown worklist order"):
        store.worklist(order="random")


def test_signed_report_is_the_version_signed_even_during_an_amendment(store):
    sid, _ = study_with_generation(store)
    rid = store.start_review(sid, "dr.a")
    store.apply_correction(rid, "edit", "dr.a", sentence_index=0, text="Signed text.")
    first_sign = sign_as_is(store, rid, "dr.a")
    store.amend(rid, "dr.a")
    store.apply_correction(rid, "edit", "dr.a", sentence_index=0, text="Amendment in progress.")
    assert store.signed_versions() == {"S-1": (rid, first_sign)}
    assert store.signed_report(rid).sentences[0].text == "Signed text."
    second = sign_as_is(store, rid, "dr.a")
    assert store.signed_versions() == {"S-1": (rid, second)}
    assert store.signed_report(rid).sentences[0].text == "Amendment in progress."


def test_out_of_domain_generations_lead_the_worklist_and_unverified_is_a_verdict(store):
    study_with_generation(store, "S-many", ungrounded=(0, 1, 2))
    sid = store.register_study("S-real", "test")
    out = model_output(2, ungrounded=())
    for s in out["sentences"]:
        s["verdict"] = "unverified"
    out["domain"] = {"score": 40.0, "limit": 12.0, "inside": False}
    gid = store.add_generation(sid, "m1", out)
    items = store.worklist()
    assert [(i.pseudo_id, i.out_of_domain) for i in items] == [("S-real", True), ("S-many", None)]  # no gate there
    assert store.generation(gid).output["domain"]["inside"] is False
