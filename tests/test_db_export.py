"""Export: R2Gen layout, pairs, manifest; incremental and idempotent; atomic under failure and under kill -9."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from _db_support import sign_as_is, db_url, store, study_with_generation, write_png  # noqa: F401
from conftest import ROOT

import db.export as export_mod
from db.export import export


def _signed_study(store, tmp_path, pseudo_id: str, seed: int, edit: str | None = None) -> int:
    image = write_png(tmp_path / f"{pseudo_id}.png", seed)
    sid, _ = study_with_generation(store, pseudo_id, images=[image])
    rid = store.start_review(sid, "dr.a")
    if edit:
        store.apply_correction(rid, "edit", "dr.a", sentence_index=1, text=edit)
    sign_as_is(store, rid, "dr.a")
    return rid


def _files(out) -> dict[str, bytes]:
    return {n: open(os.path.join(out, n), "rb").read() for n in sorted(os.listdir(out))}


def test_export_writes_the_r2gen_layout_pairs_and_manifest(store, tmp_path):
    rid = _signed_study(store, tmp_path, "S-1", 1, edit="There is a right pleural effusion.")
    sid2, _ = study_with_generation(store, "S-2", images=[write_png(tmp_path / "s2.png", 2)])
    rid2 = store.start_review(sid2, "dr.b")
    store.apply_correction(rid2, "flag", "dr.b", sentence_index=2, reason_code="not_in_image")
    store.apply_correction(rid2, "delete", "dr.b", sentence_index=0)
    store.apply_correction(rid2, "add", "dr.b", text="Small <b>nodule</b>.", regions=["left lung"])
    sign_as_is(store, rid2, "dr.b")
    sid3, _ = study_with_generation(store, "S-3")  # under review, never signed: not exported
    store.apply_correction(store.start_review(sid3, "dr.c"), "delete", "dr.c", sentence_index=0)

    out = tmp_path / "out"
    result = export(store, str(out))
    assert result.written and result.studies_new == ["S-1", "S-2"] and result.export_id is not None
    ann = json.load(open(out / "annotation.json"))
    assert ann["val"] == [] and ann["test"] == []
    e1, e2 = ann["train"]
    assert e1["id"] == "S-1" and e1["report"] == ("The heart is normal in size. There is a right pleural effusion. "
                                                    "No pneumothorax.")
    assert e1["image_path"] == [str(tmp_path / "S-1.png")] and os.path.isabs(e1["image_path"][0])
    assert e1["provenance"] == {"study": "S-1", "review": rid, "sign_correction": store.corrections(rid)[-1].id,
                                "reviewer": "dr.a", "generation": store.review(rid).generation_id,
                                "model_version": "m1"}
    assert e1["key_phrases"] == ["normal heart size", "right pleural effusion", "no pneumothorax"]  # of the final text
    # The flagged sentence is left out of the training report; the deleted one is gone; the added one is in.
    assert e2["report"] == "There is a left pleural effusion. Small <b>nodule</b>."
    pairs = [json.loads(line) for line in open(out / "pairs.jsonl")]
    by = {(p["study"], p["sentence_index"]): p for p in pairs}
    assert len(pairs) == 7
    assert by[("S-1", 1)]["model_sentence"] == "There is a left pleural effusion."
    assert by[("S-1", 1)]["corrected_sentence"] == "There is a right pleural effusion."
    assert by[("S-1", 1)]["kind"] == "edited"
    assert by[("S-2", 2)]["corrected_sentence"] is None and by[("S-2", 2)]["reason_code"] == "not_in_image"
    assert by[("S-2", 0)]["kind"] == "deleted" and by[("S-2", 0)]["corrected_sentence"] is None
    assert by[("S-2", 3)]["model_sentence"] is None and by[("S-2", 3)]["kind"] == "added"
    assert by[("S-1", 0)]["image"] == str(tmp_path / "S-1.png")
    manifest = json.load(open(out / "manifest.json"))
    for name in ("annotation.json", "pairs.jsonl"):
        data = open(out / name, "rb").read()
        assert manifest["files"][name] == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert manifest["studies"] == {"S-1": e1["provenance"]["sign_correction"],
                                   "S-2": e2["provenance"]["sign_correction"]}
    assert store.counts()["exports"] == 1


def test_export_is_incremental_idempotent_and_equal_to_a_full_rebuild(store, tmp_path):
    out, full = tmp_path / "inc", tmp_path / "full"
    _signed_study(store, tmp_path, "S-1", 1)
    first = export(store, str(out))
    before = _files(out)
    again = export(store, str(out))
    assert not again.written and again.studies_new == [] and _files(out) == before
    assert store.counts()["exports"] == 1, "an export with nothing new is not recorded"
    rid2 = _signed_study(store, tmp_path, "S-2", 2)
    second = export(store, str(out))
    assert second.studies_new == ["S-2"] and second.n_entries == 2
    # An amendment stays out until re-signed, then replaces the study's entry.
    store.amend(rid2, "dr.a")
    store.apply_correction(rid2, "edit", "dr.a", sentence_index=0, text="Cardiomegaly.")
    assert not export(store, str(out)).written
    sign_as_is(store, rid2, "dr.a")
    third = export(store, str(out))
    assert third.studies_new == ["S-2"] and third.n_entries == 2
    ann = json.load(open(out / "annotation.json"))
    assert ann["train"][1]["report"].startswith("Cardiomegaly.")
    assert len([line for line in open(out / "pairs.jsonl") if '"S-2"' in line]) == 3, "old pairs replaced"
    rebuilt = export(store, str(full), full=True)
    assert rebuilt.studies_new == ["S-1", "S-2"]
    assert _files(full) == _files(out), "incremental exports must add up to the full one, byte for byte"
    assert first.files != third.files


def test_export_all_rewrites_everything_in_place(store, tmp_path):
    out = tmp_path / "out"
    _signed_study(store, tmp_path, "S-1", 1)
    export(store, str(out))
    before = _files(out)
    r = export(store, str(out), full=True)
    assert r.written and r.studies_new == ["S-1"] and _files(out) == before


def test_concurrent_exports_into_one_folder_take_turns(store, tmp_path):
    import threading
    for k in range(3):
        _signed_study(store, tmp_path, f"S-{k}", k)
    out, results, errors = tmp_path / "out", [], []

    def run():
        try:
            results.append(export(store, str(out)))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(r.written for r in results) == 1, "one export writes, the others find nothing new"
    assert json.load(open(out / "manifest.json"))["counts"]["entries"] == 3
    assert store.counts()["exports"] == 1


def test_a_tampered_export_is_rebuilt(store, tmp_path):
    out = tmp_path / "out"
    _signed_study(store, tmp_path, "S-1", 1)
    export(store, str(out))
    good = _files(out)
    (out / "pairs.jsonl").write_text("garbage\n")
    r = export(store, str(out))
    assert r.rebuilt_because == "pairs.jsonl does not match the manifest"
    assert _files(out) == good


def test_an_exception_before_the_rename_leaves_the_previous_files(store, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _signed_study(store, tmp_path, "S-1", 1)
    export(store, str(out))
    good = _files(out)
    _signed_study(store, tmp_path, "S-2", 2)
    real_replace, calls = os.replace, []

    def replace_then_fail(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # annotation.json is renamed, then the export dies before pairs.jsonl
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(export_mod.os, "replace", replace_then_fail)
    with pytest.raises(OSError, match="disk full"):
        export(store, str(out))
    monkeypatch.undo()
    now = _files(out)
    assert set(now) == set(good), "a temp file was left behind"
    assert now["pairs.jsonl"] == good["pairs.jsonl"] and now["manifest.json"] == good["manifest.json"]
    assert store.counts()["exports"] == 1
    # The manifest still describes the old set, so the next run notices and completes the new one.
    r = export(store, str(out))
    assert r.written and r.n_entries == 2
    assert json.load(open(out / "manifest.json"))["counts"] == {"entries": 2, "pairs": 6}


KILLED_EXPORT = """
import os, sys, time
import db.export as e
from db.store import Store
marker = sys.argv[3]
real_fsync = os.fsync

def slow_fsync(fd):
    open(marker, "w").close()  # the temp file is written: now is the moment to be killed
    time.sleep(60)

e.os.fsync = slow_fsync
e.export(Store(sys.argv[1]), sys.argv[2])
"""


def test_a_killed_export_leaves_no_partial_file(store, db_url, tmp_path):
    _signed_study(store, tmp_path, "S-1", 1)
    out, marker = tmp_path / "out", tmp_path / "writing"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_EXPORT, db_url, str(out), str(marker)], cwd=ROOT,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "the export never reached its first write"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    left = os.listdir(out)
    assert "annotation.json" not in left and "manifest.json" not in left
    assert all(name.endswith(".tmp") for name in left)  # only the temp file, never a half-written target
    r = export(store, str(out))
    assert r.written and sorted(os.listdir(out)) == ["annotation.json", "fhir.ndjson", "manifest.json", "pairs.jsonl"]


def test_a_study_with_every_sentence_flagged_gives_pairs_but_no_training_report(store, tmp_path):
    sid, _ = study_with_generation(store, "S-bad", n_sentences=2)
    rid = store.start_review(sid, "dr.a")
    for i in range(2):
        store.apply_correction(rid, "flag", "dr.a", sentence_index=i, reason_code="not_in_image")
    sign_as_is(store, rid, "dr.a")
    r = export(store, str(tmp_path / "out"))
    assert r.n_entries == 0 and r.n_pairs == 2
    assert json.load(open(tmp_path / "out" / "annotation.json"))["train"] == []


def _sectioned_output() -> dict:
    """A generation written the way the model writes: FINDINGS and IMPRESSION headers in its report text."""
    texts = ["The heart is normal in size.", "There is a left pleural effusion.", "No pneumothorax.",
             "Left pleural effusion."]
    return {"report": "FINDINGS: " + " ".join(texts[:3]) + " IMPRESSION: " + texts[3],
            "sentences": [{"index": i, "text": t, "regions": [], "verdict": "grounded", "reasons": []}
                          for i, t in enumerate(texts)], "model_version": "m1"}


def test_the_training_report_keeps_the_generation_sections_and_added_sentences_go_to_findings(store, tmp_path):
    # the model learnt "FINDINGS: ... IMPRESSION: ..."; a target without the headers teaches it to drop them
    sid = store.register_study("S-1", "test", [write_png(tmp_path / "s1.png", 1)])
    store.add_generation(sid, "m1", _sectioned_output())
    rid = store.start_review(sid, "dr.a")
    store.apply_correction(rid, "edit", "dr.a", sentence_index=1, text="There is a right pleural effusion.")
    store.apply_correction(rid, "edit", "dr.a", sentence_index=3, text="Right pleural effusion.")
    store.apply_correction(rid, "flag", "dr.a", sentence_index=2, reason_code="not_in_image")
    store.apply_correction(rid, "add", "dr.a", text="Mild cardiomegaly.")
    sign_as_is(store, rid, "dr.a")
    out = tmp_path / "out"
    export(store, str(out))
    (entry,) = json.load(open(out / "annotation.json"))["train"]
    assert entry["report"] == ("FINDINGS: The heart is normal in size. There is a right pleural effusion. "
                               "Mild cardiomegaly. IMPRESSION: Right pleural effusion.")
    assert "FINDINGS" not in " ".join(entry["key_phrases"])
    by = {p["sentence_index"]: p for p in map(json.loads, open(out / "pairs.jsonl"))}
    assert [by[i]["section"] for i in range(5)] == ["FINDINGS", "FINDINGS", "FINDINGS", "IMPRESSION", None]


def test_a_section_emptied_by_the_reviewer_loses_its_header(store, tmp_path):
    sid = store.register_study("S-1", "test", [write_png(tmp_path / "s1.png", 1)])
    store.add_generation(sid, "m1", _sectioned_output())
    rid = store.start_review(sid, "dr.a")
    store.apply_correction(rid, "delete", "dr.a", sentence_index=3)
    sign_as_is(store, rid, "dr.a")
    export(store, str(tmp_path / "out"))
    (entry,) = json.load(open(tmp_path / "out" / "annotation.json"))["train"]
    assert entry["report"] == ("FINDINGS: The heart is normal in size. There is a left pleural effusion. "
                               "No pneumothorax.")


def test_an_export_in_the_older_format_is_rebuilt_with_sections(store, tmp_path):
    out = tmp_path / "out"
    sid = store.register_study("S-1", "test", [write_png(tmp_path / "s1.png", 1)])
    store.add_generation(sid, "m1", _sectioned_output())
    sign_as_is(store, store.start_review(sid, "dr.a"), "dr.a")
    export(store, str(out))
    manifest = json.load(open(out / "manifest.json"))
    manifest["format"] = "groundcxr-export/1"
    (out / "manifest.json").write_text(json.dumps(manifest))
    r = export(store, str(out))
    assert r.written and r.rebuilt_because == "it is in the older format 'groundcxr-export/1'"
    assert json.load(open(out / "annotation.json"))["train"][0]["report"].startswith("FINDINGS: ")
    assert json.load(open(out / "manifest.json"))["format"] == export_mod.FORMAT
