"""Export signed reviews as a training set in the R2Gen layout (docs/store.md, "Export format").

    OUT/annotation.json  {"train": [{id, report, image_path: [...], key_phrases, provenance}], "val": [], "test": []}
    OUT/pairs.jsonl      one line per model sentence (and per added sentence): model vs corrected, with the image
    OUT/fhir.ndjson      one line per study: its signed report as an HL7 FHIR R4 Bundle (db/fhir.py)
    OUT/manifest.json    sha256 and size of the three files, and which sign event of each study they hold

One entry per study: its newest signed review, as it was signed. Incremental by default: a study is (re)written
when its newest sign event differs from the one the manifest records, so a re-signed amendment replaces its old
entry and a second run with nothing new writes nothing. Every file is replaced atomically (temp file, fsync,
os.replace) and the manifest last, so an interrupted export leaves the previous set readable and the next run
completes it; files that do not match the manifest trigger a full rebuild.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from db.fhir import FhirError, bundle
from db.keyphrases import key_phrases
from model.atomic import atomic_write_bytes
from db.replay import report_text, sectioned_report_text
from db.store import SignedReport, Store

FORMAT = "groundcxr-export/2"  # 2: reports keep the generation's sections; pairs carry "section"
ANNOTATION, PAIRS, FHIR, MANIFEST = "annotation.json", "pairs.jsonl", "fhir.ndjson", "manifest.json"


@dataclass
class ExportResult:
    out_dir: str
    written: bool  # False when there was nothing new (no file touched)
    studies_new: list[str] = field(default_factory=list)  # (re)written this time
    n_entries: int = 0  # in annotation.json's train split after this export
    n_pairs: int = 0
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256
    export_id: int | None = None
    rebuilt_because: str | None = None  # why an incremental export became a full one
    fhir_refused: dict[str, str] = field(default_factory=dict)  # study -> why its FHIR Bundle was not written


def write_atomic(path: str, data: bytes) -> None:
    """Write `data` to `path` so that a reader sees the old file or the new one, never a part; fsynced, since an
    export is the durable hand-over to training."""
    atomic_write_bytes(path, data, fsync=True)
    dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _entry(r: SignedReport) -> dict[str, Any]:
    # the training target keeps the generation's sections: a model trained on "FINDINGS: ... IMPRESSION: ..."
    # and fine-tuned on bare prose learns to drop its impression (docs/learning_loop.md, issue 18)
    report = sectioned_report_text(r.sentences, r.sections)
    return {"id": r.study, "report": report, "image_path": list(r.image_paths),
            "key_phrases": key_phrases(report_text(r.sentences, drop_flagged=True)),
            "provenance": {"study": r.study, "review": r.review_id, "sign_correction": r.sign_id,
                           "reviewer": r.reviewer, "generation": r.generation_id, "model_version": r.model_version}}


def _pairs(r: SignedReport) -> list[dict[str, Any]]:
    image = r.image_paths[0] if r.image_paths else None
    rows = []
    for s in r.sentences:
        if s.origin == "reviewer" and s.deleted:
            continue  # added, then deleted: no trace worth learning from
        kept = not (s.deleted or s.flagged)
        section = r.sections.get(s.index) if s.origin == "model" else None
        rows.append({"study": r.study, "image": image, "sentence_index": s.index, "kind": s.state, "section": section,
                     "model_sentence": s.model_text, "corrected_sentence": s.text if kept else None,
                     "reason_code": s.reason_code, "review": r.review_id, "generation": r.generation_id,
                     "model_version": r.model_version})
    return rows


def _read_previous(out_dir: str) -> tuple[dict[str, Any] | None, str | None]:
    """The manifest of the set in `out_dir` if its files are intact; otherwise (None, why)."""
    path = os.path.join(out_dir, MANIFEST)
    if not os.path.exists(path):
        return None, None
    try:
        manifest = json.load(open(path, encoding="utf-8"))
        if manifest.get("format") != FORMAT:
            return None, f"it is in the older format {manifest.get('format')!r}"
        if FHIR not in manifest["files"]:
            return None, f"it predates {FHIR}"
        for name, meta in manifest["files"].items():
            if _sha256(open(os.path.join(out_dir, name), "rb").read()) != meta["sha256"]:
                return None, f"{name} does not match the manifest"
        return manifest, None
    except (OSError, ValueError, KeyError, AssertionError) as exc:
        return None, f"unreadable previous export ({exc.__class__.__name__})"


def _remove_stale_temps(out_dir: str) -> None:
    """Temp files of an export that was killed before its rename."""
    for name in os.listdir(out_dir):
        if name.endswith(".tmp") and any(name.startswith(f".{n}.") for n in (ANNOTATION, PAIRS, FHIR, MANIFEST)):
            os.unlink(os.path.join(out_dir, name))


def export(store: Store, out_dir: str, full: bool = False) -> ExportResult:
    os.makedirs(out_dir, exist_ok=True)
    dir_fd = os.open(out_dir, os.O_RDONLY)
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX)  # two exports into one folder take turns (the lock dies with the process)
        return _export(store, out_dir, full)
    finally:
        os.close(dir_fd)


def _export(store: Store, out_dir: str, full: bool) -> ExportResult:
    _remove_stale_temps(out_dir)
    result = ExportResult(out_dir=os.path.abspath(out_dir), written=False)
    previous = None
    if not full:
        previous, result.rebuilt_because = _read_previous(out_dir)
    signed = store.signed_versions()  # study -> (review id, sign id)
    done: dict[str, int] = dict(previous["studies"]) if previous else {}
    todo = sorted(study for study, (_, sign_id) in signed.items() if done.get(study) != sign_id)
    if previous and not todo:
        result.n_entries, result.n_pairs = previous["counts"]["entries"], previous["counts"]["pairs"]
        result.files = {name: meta["sha256"] for name, meta in previous["files"].items()}
        return result

    entries: dict[str, dict[str, Any]] = {}
    pairs: dict[str, list[dict[str, Any]]] = {}
    reports: dict[str, str] = {}  # study -> its FHIR Bundle, one JSON line
    if previous:
        entries = {e["id"]: e for e in json.load(open(os.path.join(out_dir, ANNOTATION), encoding="utf-8"))["train"]}
        for line in open(os.path.join(out_dir, PAIRS), encoding="utf-8"):
            row = json.loads(line)
            pairs.setdefault(row["study"], []).append(row)
        for line in open(os.path.join(out_dir, FHIR), encoding="utf-8"):
            ident = json.loads(line)["entry"][0]["resource"]["identifier"][0]
            reports[ident["value"]] = line
    for study in todo:
        r = store.signed_report(signed[study][0])
        entry = _entry(r)
        if entry["report"]:
            entries[study] = entry
        else:  # every sentence flagged: nothing to learn as a target report, but the pairs still count
            entries.pop(study, None)
        pairs[study] = _pairs(r)
        try:
            reports[study] = json.dumps(bundle(r), ensure_ascii=False, sort_keys=True) + "\n"
        except FhirError as exc:  # one report that FHIR refuses must not cost the training set its other studies
            reports.pop(study, None)
            result.fhir_refused[study] = str(exc)
        done[study] = r.sign_id

    annotation = {"train": [entries[k] for k in sorted(entries)], "val": [], "test": []}
    blobs = {ANNOTATION: json.dumps(annotation, ensure_ascii=False, indent=1).encode("utf-8"),
             PAIRS: "".join(json.dumps(row, ensure_ascii=False) + "\n"
                            for k in sorted(pairs) for row in pairs[k]).encode("utf-8"),
             FHIR: "".join(reports[k] for k in sorted(reports)).encode("utf-8")}
    for name, data in blobs.items():
        write_atomic(os.path.join(out_dir, name), data)
    result.n_entries, result.n_pairs = len(annotation["train"]), sum(len(v) for v in pairs.values())
    manifest = {"format": FORMAT, "image_paths": "absolute",
                "files": {n: {"sha256": _sha256(d), "bytes": len(d)} for n, d in blobs.items()},
                "counts": {"entries": result.n_entries, "pairs": result.n_pairs},
                "studies": {k: done[k] for k in sorted(done)}}
    data = json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8")
    write_atomic(os.path.join(out_dir, MANIFEST), data)
    result.written, result.studies_new = True, todo
    result.files = {n: m["sha256"] for n, m in manifest["files"].items()} | {MANIFEST: _sha256(data)}
    result.export_id = store.record_export(out_dir, full or previous is None, {
        "studies": {k: done[k] for k in todo}, "entries": result.n_entries, "pairs": result.n_pairs,
        "files": result.files}, _sha256(data))
    return result
