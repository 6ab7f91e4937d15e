"""Dataset loaders: phantom, IU X-Ray and MIMIC-CXR read into the same `Example` records.

- `load_r2gen(annotation_path, image_root=None)`: an R2Gen-style annotation.json
  (`{"train": [...], "val": [...], "test": [...]}`, entries with id, report, image_path); phantom datasets add
  findings, prior_report, key_phrases and masks, which are carried through.
- `load_iu_kaggle(reports_csv, projections_csv=None, image_root=None)`: the Kaggle IU layout
  (indiana_reports.csv + indiana_projections.csv); report = findings + impression; image_paths = frontal images.
No torch here.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field

SPLITS = ("train", "val", "test")


@dataclass
class Example:
    id: str
    report: str
    image_paths: list[str] = field(default_factory=list)  # absolute when an image root is known
    findings: dict | None = None  # the phantom findings record
    prior_report: str | None = None
    key_phrases: list[str] | None = None
    masks_path: str | None = None
    split: str | None = None


def _join(root: str | None, rel: str) -> str:
    return rel if root is None or os.path.isabs(rel) else os.path.join(root, rel)


def load_r2gen(annotation_path: str, image_root: str | None = None) -> dict[str, list[Example]]:
    """Read an R2Gen annotation.json. Image and mask paths are joined to `image_root` (default: the annotation's
    directory). Splits other than train/val/test are kept under their own names."""
    if not os.path.isfile(annotation_path):
        raise FileNotFoundError(f"annotation file not found: {annotation_path}")
    with open(annotation_path, encoding="utf-8") as fh:
        try:
            ann = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{annotation_path} is not valid JSON: {exc}") from exc
    if not isinstance(ann, dict) or not all(isinstance(v, list) for v in ann.values()):
        raise ValueError(f"{annotation_path}: expected {{split: [entries]}}, got {type(ann).__name__}")
    root = os.path.dirname(os.path.abspath(annotation_path)) if image_root is None else image_root
    out: dict[str, list[Example]] = {}
    for split, entries in ann.items():
        examples = []
        for i, e in enumerate(entries):
            missing = [k for k in ("id", "report", "image_path") if k not in e]
            if missing:
                raise ValueError(f"{annotation_path}: {split}[{i}] lacks {missing}")
            paths = e["image_path"] if isinstance(e["image_path"], list) else [e["image_path"]]
            examples.append(Example(
                id=str(e["id"]), report=e["report"], image_paths=[_join(root, p) for p in paths],
                findings=e.get("findings"), prior_report=e.get("prior_report"), key_phrases=e.get("key_phrases"),
                masks_path=_join(root, e["masks"]) if e.get("masks") else None, split=e.get("split", split)))
        out[split] = examples
    return out


def _read_csv(path: str, required: set[str]) -> list[dict]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CSV file not found: {path}")
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = sorted(required - set(reader.fieldnames or ()))
        if missing:
            raise ValueError(f"{path} lacks columns {missing} (has {reader.fieldnames})")
        return list(reader)


def load_iu_kaggle(reports_csv: str, projections_csv: str | None = None,
                   image_root: str | None = None) -> list[Example]:
    """IU X-Ray in the Kaggle layout. `reports_csv` may be the directory holding both CSVs.

    Example ids are `CXR<uid>` (as in the NegBio gold labels); the report is findings then impression; reports
    with neither are skipped. image_paths lists the study's frontal images (empty when it has none), joined to
    `image_root` when given. split is None: the official splits live in the R2Gen annotation files.
    """
    if os.path.isdir(reports_csv):
        projections_csv = projections_csv or os.path.join(reports_csv, "indiana_projections.csv")
        reports_csv = os.path.join(reports_csv, "indiana_reports.csv")
    if projections_csv is None:
        projections_csv = os.path.join(os.path.dirname(reports_csv), "indiana_projections.csv")
    reports = _read_csv(reports_csv, {"uid", "findings", "impression"})
    frontal: dict[str, list[str]] = {}
    for row in _read_csv(projections_csv, {"uid", "filename", "projection"}):
        if row["projection"].strip().lower() == "frontal":
            frontal.setdefault(row["uid"].strip(), []).append(row["filename"].strip())
    out = []
    for row in reports:
        text = " ".join(p for p in ((row["findings"] or "").strip(), (row["impression"] or "").strip()) if p)
        if not text:
            continue
        uid = row["uid"].strip()
        out.append(Example(id=f"CXR{uid}", report=text,
                           image_paths=[_join(image_root, f) for f in frontal.get(uid, [])]))
    return out
