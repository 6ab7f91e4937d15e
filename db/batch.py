"""Bulk work around the store: import images or an R2Gen annotation.json as studies, register a model directory,
and run the model over the studies it has not reported on yet.

The model runs in a subprocess (`python -m model generate --model DIR --ground --out DIR IMAGE...`, one JSON object
per image on stdout: `ReportOutput.to_dict()` plus "image"), so `db/` never imports torch.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

from db.store import Store, StoreError, StudyInfo, sha256_file

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".dcm")
DEFAULT_GENERATOR = (sys.executable, "-m", "model", "generate")


@dataclass
class ImportResult:
    studies_new: int = 0
    studies_seen: int = 0  # already registered (same id, or all of its images by sha256)
    images: int = 0
    failed: list[str] = field(default_factory=list)  # "what: why" for each study refused; the others are imported


@dataclass
class GenerateResult:
    model_version: str
    stored: int = 0
    failed: list[str] = field(default_factory=list)  # "image: why"


def _image_groups(folder: str) -> list[list[str]]:
    """Images directly in `folder` are one study each; the images of each sub-folder together are one study
    (the R2Gen IU layout: images/CXR1_1_IM-0001/0.png, 1.png)."""
    groups: dict[str, list[str]] = {}
    for dirpath, dirnames, files in os.walk(folder):
        dirnames.sort()
        for f in sorted(files):
            if f.lower().endswith(IMAGE_EXTS):
                key = os.path.join(dirpath, f) if dirpath == folder else dirpath
                groups.setdefault(key, []).append(os.path.join(dirpath, f))
    return [groups[k] for k in sorted(groups)]


def import_path(store: Store, path: str, source: str | None = None, images_dir: str | None = None,
                splits: tuple[str, ...] = ("train", "val", "test")) -> ImportResult:
    """Register a folder of images, or the entries of an annotation.json. Its image paths are relative to
    `images_dir`; by default to the annotation's own folder (the phantom layout: "images/<id>.png") or else to the
    `images` folder beside it (the R2Gen IU layout: "CXR1_1_IM-0001/0.png")."""
    result = ImportResult()
    if os.path.isdir(path):
        source = source or f"folder:{os.path.basename(os.path.abspath(path))}"
        for group in _image_groups(path):
            shas = [sha256_file(p) for p in group]
            if all(store.find_image(h) is not None for h in shas):
                result.studies_seen += 1
                continue
            # Named from the pixels, not the file name: names at a site can carry patient identifiers.
            pseudo = "S-" + hashlib.sha256("".join(sorted(shas)).encode()).hexdigest()[:16]
            try:
                store.register_study(pseudo, source, group)
            except StoreError as exc:  # one bad study must not stop the others
                result.failed.append(f"{group[0]}: {exc}")
                continue
            result.studies_new += 1
            result.images += len(group)
        return result
    if not os.path.isfile(path):
        raise StoreError(f"nothing to import at {path}: not a folder or a file")
    try:
        annotation = json.load(open(path, encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path} is not a JSON annotation file: {exc}") from exc
    if not isinstance(annotation, dict) or not any(isinstance(annotation.get(k), list) for k in splits):
        raise StoreError(f"{path} has none of the splits {splits} (expected the R2Gen annotation.json layout)")
    here = os.path.dirname(os.path.abspath(path))
    bases = [images_dir] if images_dir else [here, os.path.join(here, "images")]
    source = source or f"annotation:{os.path.basename(os.path.dirname(os.path.abspath(path)))}"
    for split in splits:
        for n, entry in enumerate(annotation.get(split) or []):
            try:  # one bad entry is reported and skipped; the others are imported
                _import_entry(store, entry, f"{path}: {split}[{n}]", bases, f"{source}/{split}", result)
            except StoreError as exc:
                result.failed.append(str(exc))
    return result


def _import_entry(store: Store, entry: object, where: str, bases: list[str], source: str,
                  result: ImportResult) -> None:
    if not isinstance(entry, dict) or "id" not in entry or not isinstance(entry.get("image_path"), list) \
            or not all(isinstance(p, str) for p in entry["image_path"]):
        raise StoreError(f"{where} needs an 'id' and an 'image_path' list of file names")
    found = [[os.path.join(b, p) for p in entry["image_path"]] for b in bases]
    images = next((f for f in found if all(os.path.isfile(p) for p in f)), None)
    if images is None:
        raise StoreError(f"{where} ({entry['id']}): image not found: {entry['image_path']} under {' or '.join(bases)}")
    try:
        existing = store.study_id(str(entry["id"]))
    except StoreError:
        existing = None
    try:
        store.register_study(str(entry["id"]), source, images)
    except StoreError as exc:
        raise StoreError(f"{where}: {exc}") from None
    result.studies_seen += existing is not None
    result.studies_new += existing is None
    result.images += 0 if existing is not None else len(images)


def register_model_dir(store: Store, model_dir: str, force: bool = False) -> str:
    """Register DIR as a model version; DIR/model_card.json (if present) gives name, parent and metrics. A
    fine-tuned version (one with a parent) whose card records no passed promotion gate is refused unless `force`;
    a forced one's card keeps the override (`gate_override`)."""
    from model.report.gate import refusal

    if not os.path.isdir(model_dir):
        raise StoreError(f"model directory not found: {model_dir}")
    card: dict = {}
    card_path = os.path.join(model_dir, "model_card.json")
    if os.path.exists(card_path):
        try:
            card = json.load(open(card_path, encoding="utf-8"))
        except ValueError as exc:
            raise StoreError(f"{card_path} is not valid JSON: {exc}") from exc
        if not isinstance(card, dict):
            raise StoreError(f"{card_path} must hold a JSON object")
    name = str(card.get("name") or os.path.basename(os.path.abspath(model_dir)))
    why = refusal({"name": name, **card})
    admitted = {mv.name: mv.path for mv in store.model_versions()}.get(name) == os.path.abspath(model_dir)
    if why and not admitted:  # a version forced in once (`db generate` registers again) is not asked twice
        if not force:
            raise StoreError(f"{why}; pass --force to register it anyway")
        card = {**card, "gate_override": why}
    store.register_model(name, model_dir, parent=card.get("parent"), card=card)
    return name


def _frontal_first(study: StudyInfo) -> str:
    frontal = [i.path for i in study.images if i.view == "frontal"]
    return (frontal or [i.path for i in study.images])[0]


MAX_FAILURES_IN_A_ROW = 3  # then the generator itself is broken (no model, no grounding), not an image


def generate(store: Store, model_dir: str, batch: int = 8, generator: list[str] | None = None,
             out_dir: str | None = None, limit: int | None = None) -> GenerateResult:
    """Run the model over every study without a generation from this model version, `batch` images per call.
    When a call fails, what it printed is kept and its other images are retried one by one, so one unreadable
    image costs only itself; after MAX_FAILURES_IN_A_ROW failing images in a row the run stops (StoreError)."""
    if batch < 1:
        raise StoreError(f"batch must be at least 1, got {batch}")
    name = register_model_dir(store, model_dir)
    result = GenerateResult(model_version=name)
    todo = [st for st in store.studies_without_generation(name) if st.images][:limit]
    streak = [0]  # failing images since the last stored one

    def run(by_image: dict[str, int], work_dir: str) -> None:
        cmd = list(generator or DEFAULT_GENERATOR) + ["--model", model_dir, "--ground", "--out", work_dir]
        proc = subprocess.run(cmd + list(by_image), capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            if not line.startswith("{"):
                continue  # progress or log lines
            try:
                out = json.loads(line)
                image = os.path.abspath(out.pop("image"))
            except (ValueError, KeyError, AttributeError) as exc:
                raise StoreError(f"generator printed a line that is not an output object: {line[:200]!r}") from exc
            if image not in by_image:
                raise StoreError(f"generator returned an image it was not given: {image}")
            if "error" in out:  # the generator refused this film (not a radiograph, ...): it says so and goes on
                by_image.pop(image)
                result.failed.append(f"{image}: {out['error']}")  # not a broken generator: no streak
                continue
            try:
                store.add_generation(by_image.pop(image), name, out, image_path=image)
                result.stored += 1
                streak[0] = 0
            except StoreError as exc:  # one bad output must not lose the rest of the batch
                fail(image, str(exc))
        if proc.returncode != 0 and len(by_image) > 1:
            for image, study_id in list(by_image.items()):
                run({image: study_id}, work_dir)
            return
        why = (f"generator exited with {proc.returncode}: {_last_line(proc.stderr)}" if proc.returncode
               else "no output from the generator")
        for image in by_image:
            fail(image, why)

    def fail(image: str, why: str) -> None:
        result.failed.append(f"{image}: {why}")
        streak[0] += 1
        if streak[0] >= MAX_FAILURES_IN_A_ROW:
            raise StoreError(f"generator failed on {streak[0]} images in a row ({result.stored} stored); last: "
                             f"{image}: {why}")

    with tempfile.TemporaryDirectory(prefix="groundcxr-gen-") as tmp:
        for start in range(0, len(todo), batch):
            run({_frontal_first(st): st.id for st in todo[start:start + batch]}, out_dir or tmp)
    return result


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "(no message)"
