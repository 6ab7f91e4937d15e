"""A signed report leaves as HL7 FHIR R4: a Bundle that SMART's R4 models accept, with the reviewer as performer, the
model as the drafting Device, final then amended, and the flag meaning the same as in the export."""
import base64
import copy
import json

import pytest
from _db_support import db_url, store, study_with_generation, write_png  # noqa: F401

from db.export import export
from db.fhir import FhirError, bundle, validate


def _signed(store, tmp_path, study="S-1", seed=1):
    sid, _ = study_with_generation(store, study, images=[write_png(tmp_path / f"{study}.png", seed)])
    rid = store.start_review(sid, "dr.a")
    store.apply_correction(rid, "flag", "dr.a", sentence_index=2, reason_code="not_in_image")
    store.apply_correction(rid, "edit", "dr.a", sentence_index=1, text="Small right <pleural> effusion & more.")
    store.apply_correction(rid, "accept", "dr.a", sentence_index=0)
    store.sign(rid, "dr.a")
    return rid


def _resources(b):
    return {e["resource"]["resourceType"]: e for e in b["entry"]}


def test_a_signed_report_is_a_valid_r4_bundle_naming_reviewer_and_model(store, tmp_path):
    rid = _signed(store, tmp_path)
    r = store.signed_report(rid)
    b = bundle(r)
    by = _resources(b)
    assert b["type"] == "collection" and set(by) == {"DiagnosticReport", "Practitioner", "Device", "Provenance"}
    report = by["DiagnosticReport"]["resource"]
    assert report["status"] == "final"
    assert report["conclusion"] == "The heart is normal in size. Small right <pleural> effusion & more."
    assert base64.b64decode(report["presentedForm"][0]["data"]).decode() == report["conclusion"]
    assert "&lt;pleural&gt; effusion &amp; more" in report["text"]["div"]  # the narrative is escaped XHTML
    assert report["performer"][0]["display"] == "dr.a"
    assert report["performer"][0]["reference"] == by["Practitioner"]["fullUrl"]
    assert {"system": "urn:groundcxr:study", "value": "S-1"} in report["identifier"]
    assert by["Device"]["resource"]["deviceName"][0]["name"] == "m1"
    agents = {a["type"]["coding"][0]["code"]: a["who"]["reference"] for a in by["Provenance"]["resource"]["agent"]}
    assert agents == {"author": by["Device"]["fullUrl"], "verifier": by["Practitioner"]["fullUrl"]}
    assert by["Provenance"]["resource"]["target"][0]["reference"] == by["DiagnosticReport"]["fullUrl"]
    assert report["issued"].endswith("Z") and b["timestamp"] == report["issued"]
    assert bundle(store.signed_report(rid)) == b, "the same sign event gives the same bytes"


def test_a_report_re_signed_after_an_amendment_is_amended(store, tmp_path):
    rid = _signed(store, tmp_path)
    first = bundle(store.signed_report(rid))
    store.amend(rid, "dr.a", note="laterality")
    store.apply_correction(rid, "edit", "dr.a", sentence_index=1, text="Small left pleural effusion.")
    store.sign(rid, "dr.a")
    second = _resources(bundle(store.signed_report(rid)))["DiagnosticReport"]["resource"]
    assert second["status"] == "amended" and "left pleural" in second["conclusion"]
    assert second["id"] != _resources(first)["DiagnosticReport"]["resource"]["id"]


@pytest.mark.parametrize("breakage, names", [
    (lambda r: r.update(status="signed"), "DiagnosticReport.status"),
    (lambda r: r.update(status=5), "status"),
    (lambda r: r.pop("code"), "code"),
    (lambda r: r.update(issued="yesterday"), "issued"),
    (lambda r: r.update(verdict="grounded"), "verdict"),
])
def test_validation_refuses_what_r4_does_not_allow(store, tmp_path, breakage, names):
    b = bundle(store.signed_report(_signed(store, tmp_path)))
    bad = copy.deepcopy(b)
    breakage(bad["entry"][0]["resource"])
    with pytest.raises(FhirError, match=names):
        validate(bad)


def test_export_writes_one_bundle_per_signed_study_incrementally(store, tmp_path):
    _signed(store, tmp_path, "S-1")
    out = tmp_path / "out"
    export(store, str(out))
    lines = open(out / "fhir.ndjson").read().splitlines()
    assert len(lines) == 1
    validate(json.loads(lines[0]))
    _signed(store, tmp_path, "S-2", seed=2)
    r = export(store, str(out))
    assert r.studies_new == ["S-2"] and not r.fhir_refused
    again = open(out / "fhir.ndjson").read().splitlines()
    assert len(again) == 2 and again[0] == lines[0], "the earlier study's report is kept byte for byte"
    manifest = json.load(open(out / "manifest.json"))
    assert "fhir.ndjson" in manifest["files"]


def test_an_export_made_before_fhir_is_rebuilt_with_it(store, tmp_path):
    _signed(store, tmp_path, "S-1")
    out = tmp_path / "out"
    export(store, str(out))
    manifest = json.load(open(out / "manifest.json"))
    del manifest["files"]["fhir.ndjson"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    r = export(store, str(out))
    assert r.written and r.rebuilt_because == "it predates fhir.ndjson"
