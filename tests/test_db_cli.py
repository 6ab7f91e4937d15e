"""`python -m db`: import, register-model, generate (through a fake generator process), worklist, export."""
import json
import os
import subprocess
import sys

import pytest
from _db_support import sign_as_is, write_png
from conftest import ROOT

from db.__main__ import COMMANDS, main
from db.store import Store

FAKE = os.path.join(ROOT, "tests", "fixtures", "db", "fake_generator.py")
GENERATOR = f"{sys.executable} {FAKE}"


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    (folder / "CXR1_1_IM-0001").mkdir(parents=True)
    write_png(folder / "a_pa.png", 1)
    write_png(folder / "b.png", 2)
    write_png(folder / "CXR1_1_IM-0001" / "0.png", 3)
    write_png(folder / "CXR1_1_IM-0001" / "1.png", 4)
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture
def model_dir(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "model_card.json").write_text(json.dumps({"name": "tiny-v1", "metrics": {"bleu4": 0.1}}))
    return d


def test_help_lists_every_command_and_each_has_help():
    out = subprocess.run([sys.executable, "-m", "db", "--help"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    for name in COMMANDS:
        assert name in out
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0


def test_import_a_folder_groups_subfolders_and_dedups_by_sha256(url, images, capsys):
    assert main(["import", "--db", url, str(images)]) == 0
    assert "imported 3 new studies (4 images)" in capsys.readouterr().out
    assert main(["import", "--db", url, str(images)]) == 0
    assert "imported 0 new studies (0 images); 3 were registered already" in capsys.readouterr().out
    store = Store(url)
    studies = [store.study(i.study_id) for i in store.worklist(order="oldest")]
    assert sorted(len(s.images) for s in studies) == [1, 1, 2]
    assert all(s.pseudo_id.startswith("S-") and "CXR" not in s.pseudo_id for s in studies)
    store.close()


def test_import_an_annotation_json(url, images, tmp_path, capsys):
    ann = tmp_path / "annotation.json"
    ann.write_text(json.dumps({"train": [{"id": "CXR1_1_IM-0001", "report": "x", "image_path":
                                          ["CXR1_1_IM-0001/0.png", "CXR1_1_IM-0001/1.png"]}],
                               "val": [{"id": "solo", "report": "y", "image_path": ["b.png"]}], "test": []}))
    assert main(["import", "--db", url, str(ann)]) == 0  # images/ beside it is found by itself
    assert "imported 2 new studies (3 images)" in capsys.readouterr().out
    store = Store(url)
    info = store.study(store.study_id("CXR1_1_IM-0001"))
    assert info.source.endswith("/train") and len(info.images) == 2
    store.close()
    assert main(["import", "--db", url, str(images)]) == 0  # the same pixels from the folder: only a_pa.png is new
    assert "imported 1 new studies" in capsys.readouterr().out


def test_import_a_phantom_style_annotation_with_paths_relative_to_its_folder(url, images, tmp_path, capsys):
    ann = tmp_path / "annotation.json"  # beside images/, paths include "images/" (model.phantom's layout)
    ann.write_text(json.dumps({"train": [{"id": "phantom-0001", "report": "x", "image_path": ["images/b.png"]}]}))
    assert main(["import", "--db", url, str(ann)]) == 0
    store = Store(url)
    assert store.study(store.study_id("phantom-0001")).images[0].path == str(images / "b.png")
    store.close()
    other = tmp_path / "elsewhere"
    other.mkdir()
    write_png(other / "c.png", 9)
    ann.write_text(json.dumps({"val": [{"id": "moved", "image_path": ["c.png"]}]}))
    assert main(["import", "--db", url, str(ann), "--images", str(other)]) == 0
    assert "imported 1 new studies (1 images)" in capsys.readouterr().out.splitlines()[-1]


def test_import_reports_bad_input_clearly(url, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["import", "--db", url, str(bad)]) == 1
    assert "is not a JSON annotation file" in capsys.readouterr().err
    missing = tmp_path / "annotation.json"
    missing.write_text(json.dumps({"train": [{"id": "x", "image_path": ["nope.png"]}]}))
    assert main(["import", "--db", url, str(missing)]) == 1
    assert "train[0] (x): image not found: ['nope.png'] under" in capsys.readouterr().err
    assert main(["import", "--db", url, str(tmp_path / "nothing")]) == 1
    assert "nothing to import" in capsys.readouterr().err


def test_register_model_reads_the_card(url, model_dir, tmp_path, capsys):
    assert main(["register-model", "--db", url, str(model_dir)]) == 0
    child = tmp_path / "child"
    child.mkdir()
    (child / "model_card.json").write_text(json.dumps({"name": "tiny-v2", "parent": "tiny-v1",
                                                       "gate": {"passed": True, "failures": []}}))
    assert main(["register-model", "--db", url, str(child)]) == 0
    store = Store(url)
    assert store.model_version("tiny-v2").parent == "tiny-v1"
    assert store.model_version("tiny-v1").card["metrics"] == {"bleu4": 0.1}
    store.close()
    assert main(["register-model", "--db", url, str(tmp_path / "absent")]) == 1
    assert "model directory not found" in capsys.readouterr().err


def test_register_model_refuses_a_fine_tune_that_failed_the_gate_unless_forced(url, model_dir, tmp_path, capsys):
    assert main(["register-model", "--db", url, str(model_dir)]) == 0
    for name, gate in (("tiny-bad", {"passed": False, "failures": ["false_alarm: up to +12.0 pp (margin 2 pp)"]}),
                       ("tiny-ungated", None)):
        child = tmp_path / name
        child.mkdir()
        (child / "model_card.json").write_text(json.dumps({"name": name, "parent": "tiny-v1", "gate": gate}))
        assert main(["register-model", "--db", url, str(child)]) == 1
        err = capsys.readouterr().err
        assert "promotion" in err and "gate" in err and "--force" in err
        assert name not in {mv.name for mv in Store(url).model_versions()}
        assert main(["register-model", "--db", url, str(child), "--force"]) == 0
    store = Store(url)
    assert "false_alarm" in store.model_version("tiny-bad").card["gate_override"]
    store.close()


def test_generate_runs_the_model_process_in_batches_and_stores_outputs(url, images, model_dir, capsys):
    main(["import", "--db", url, str(images)])
    args = ["generate", "--db", url, "--model", str(model_dir), "--batch", "2", "--generator", GENERATOR]
    assert main(args) == 0
    assert "tiny-v1: stored 3 generations, 0 failed" in capsys.readouterr().out
    assert main(args) == 0  # nothing left for this model version
    assert "stored 0 generations" in capsys.readouterr().out
    store = Store(url)
    items = store.worklist()
    assert {i.model_version for i in items} == {"tiny-v1"} and all(i.n_ungrounded == 1 for i in items)
    pair = next(store.study(i.study_id) for i in items if len(store.study(i.study_id).images) == 2)
    gen = store.generation(next(i.generation_id for i in items if i.study_id == pair.id))
    assert gen.output["timings"] == {"total_s": 0.01} and "image" not in gen.output
    store.close()
    assert main(["worklist", "--db", url]) == 0
    assert capsys.readouterr().out.count("tiny-v1") == 3


@pytest.mark.parametrize("mode, code, message", [
    ("fail", 1, "generator failed on 3 images in a row (0 stored); last: "),
    ("skip_last", 1, "no output from the generator"),
    ("bad_verdict", 1, "unknown verdicts"),
    ("crash_on_b", 1, "b.png: generator exited with 1: fake generator: cannot read"),
    ("refuse_all", 1, ": not a frontal chest radiograph"),  # every film refused: each said, the batch finished
])
def test_generate_failures_are_reported_and_good_outputs_kept(url, images, model_dir, capsys, monkeypatch,
                                                               mode, code, message):
    main(["import", "--db", url, str(images)])
    monkeypatch.setenv("FAKE_GENERATOR_MODE", mode)
    assert main(["generate", "--db", url, "--model", str(model_dir), "--batch", "8", "--generator", GENERATOR]) == code
    assert message in capsys.readouterr().err
    store = Store(url)
    assert store.counts()["generations"] == {"fail": 0, "skip_last": 2, "bad_verdict": 2, "crash_on_b": 2,
                                             "refuse_all": 0}[mode]
    store.close()


def test_export_through_the_cli(url, images, model_dir, tmp_path, capsys):
    main(["import", "--db", url, str(images)])
    main(["generate", "--db", url, "--model", str(model_dir), "--generator", GENERATOR])
    store = Store(url)
    item = store.worklist()[0]
    rid = store.start_review(item.study_id, "dr.a")
    store.apply_correction(rid, "edit", "dr.a", sentence_index=1, text="No opacity.")
    sign_as_is(store, rid, "dr.a")
    store.close()
    out = tmp_path / "export"
    assert main(["export", "--db", url, "--out", str(out)]) == 0
    assert "exported 1 new or re-signed studies" in capsys.readouterr().out
    assert main(["export", "--db", url, "--out", str(out)]) == 0
    assert "nothing new since the last export" in capsys.readouterr().out
    ann = json.load(open(out / "annotation.json"))
    assert ann["train"][0]["report"] == "The heart is normal in size. No opacity."
    assert main(["history", "--db", url, item.pseudo_id]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("(tiny-v1), signed")
    assert "dr.a: edit sentence=1 text='No opacity.'" in lines[1] and "dr.a: sign" in lines[2]
    assert lines[3] == "  final: The heart is normal in size. No opacity."
    assert main(["history", "--db", url, "S-nope"]) == 1
    assert "no study 'S-nope'" in capsys.readouterr().err
    assert ann["train"][0]["provenance"]["model_version"] == "tiny-v1"


def test_default_url_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GROUNDCXR_DB", f"sqlite:///{tmp_path / 'env.db'}")
    assert main(["init"]) == 0
    assert (tmp_path / "env.db").exists()


def test_a_file_that_is_not_a_database_is_reported(tmp_path, capsys):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    assert main(["init", "--db", f"sqlite:///{junk}"]) == 1
    assert "file is not a database" in capsys.readouterr().err


def _history_of_hostile_sentences(url):
    """A review whose trail holds an ANSI sequence (written before the store refused them, here straight into the
    table) and a right-to-left override (still accepted in sentence text)."""
    from _db_support import study_with_generation
    from sqlalchemy import text
    store = Store(url)
    sid, _ = study_with_generation(store, "S-hostile")
    rid = store.start_review(sid, "dr.a")
    store.apply_correction(rid, "edit", "dr.a", sentence_index=0, text="Left \u202eeffusion thgir")
    store.apply_correction(rid, "edit", "dr.a", sentence_index=1, text="placeholder")
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE corrections SET text = :t WHERE text = 'placeholder'"),
                      {"t": "\x1b[2J\x1b[31mAll clear.\x1b]0;pwned\x07"})
    store.close()


def test_history_shows_escape_sequences_and_bidi_overrides_as_visible_escapes(url, capsys):
    _history_of_hostile_sentences(url)
    assert main(["history", "--db", url, "S-hostile"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "text='Left \\u202eeffusion thgir'" in out
    assert "text='\\x1b[2J\\x1b[31mAll clear.\\x1b]0;pwned\\x07'" in out
    assert "final: Left \\u202eeffusion thgir \\x1b[2J" in out


def test_import_reports_each_refused_entry_in_one_line_and_imports_the_rest(url, tmp_path, capsys):
    (tmp_path / "images").mkdir()
    write_png(tmp_path / "images" / "ok.png", 1)
    write_png(tmp_path / "images" / "two.png", 2)
    ann = {"train": [{"id": "ok-1", "image_path": ["ok.png"]}, {"id": "dr\u202eevil", "image_path": ["two.png"]},
                     {"id": "missing", "image_path": ["nope.png"]}, {"id": "bad", "image_path": [3]}, "junk"]}
    path = tmp_path / "annotation.json"
    path.write_text(json.dumps(ann))
    assert main(["import", "--db", url, str(path)]) == 1
    out, err = capsys.readouterr()
    assert "imported 1 new studies (1 images); 0 were registered already; 4 refused" in out
    errors = err.strip().splitlines()
    assert len(errors) == 4 and all(line.startswith(f"error: {path}: train[") for line in errors)
    assert "bidirectional control character" in errors[0] and "image not found" in errors[1]
    assert "Traceback" not in err


def test_export_into_a_file_is_one_line_not_a_traceback(url, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["export", "--db", url, "--out", str(blocker / "sub")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
