"""The review store's service API: what the app and the CLI call. Every write is one transaction.

    store = Store("sqlite:///groundcxr.db")            # migrations are applied here
    sid = store.register_study("S-0001", "phantom", images=["a.png"])
    gid = store.add_generation(sid, "s2d-tiny-v1", report_output.to_dict())
    rid = store.start_review(sid, "dr.a")
    store.apply_correction(rid, "edit", "dr.a", sentence_index=1, text="No pleural effusion.")
    store.undo_last(rid, "dr.a")                        # appends a "revert", deletes nothing
    store.sign(rid, "dr.a")
    store.amend(rid, "dr.b")                           # a signed report changes only through an amendment
    store.final_report(rid)                            # list[FinalSentence] with provenance

Review states: new -> in_review (first correction) -> signed; signed -> amended (amend) -> signed (sign again).
Errors are `StoreError` (or `NotFoundError`) with a message naming the problem; a failed call writes nothing.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.engine import make_engine, migrate, write_engine
from db.models import Correction, Export, Generation, Image, ModelVersion, Review, Study, utcnow
from db.replay import CONTENT_KINDS, EVENT_KINDS, REASON_CODES, CorrectionRecord, FinalSentence, replay, report_text
from model.taxonomy import is_valid_name
from model.types import VERDICTS, ReportOutput

MAX_TEXT = 2_000  # characters in one sentence or note: a sentence, not a document
MAX_NAME = 128  # reviewer, model version, study id
MAX_REGIONS = 64
MAX_OUTPUT_BYTES = 1_000_000  # one ReportOutput.to_dict() as JSON
WORKLIST_ORDERS = ("most_ungrounded", "oldest", "newest")


class StoreError(ValueError):
    """A request the store refuses; nothing was written."""


class NotFoundError(StoreError):
    pass


@dataclass(frozen=True)
class ImageInfo:
    id: int
    path: str
    sha256: str
    view: str | None
    width: int | None
    height: int | None
    size_bytes: int


@dataclass(frozen=True)
class StudyInfo:
    id: int
    pseudo_id: str
    source: str
    images: list[ImageInfo]


@dataclass(frozen=True)
class ModelVersionInfo:
    id: int
    name: str
    path: str | None
    parent: str | None
    card: dict[str, Any]
    created_at: dt.datetime


@dataclass(frozen=True)
class GenerationInfo:
    id: int
    study_id: int
    model_version: str
    report: str
    output: dict[str, Any]  # ReportOutput.to_dict(), as the model wrote it
    n_ungrounded: int
    created_at: dt.datetime


@dataclass(frozen=True)
class ReviewInfo:
    id: int
    study_id: int
    generation_id: int
    reviewer: str
    status: str
    signed_at: dt.datetime | None


@dataclass(frozen=True)
class WorklistItem:
    study_id: int
    pseudo_id: str
    status: str  # "new" until a review exists, then the review's status
    model_version: str | None  # of the latest generation; None before any
    generation_id: int | None
    n_sentences: int
    n_ungrounded: int
    review_id: int | None
    reviewer: str | None
    created_at: dt.datetime


@dataclass
class SignedReport:
    """What export needs of one signed review (db/export.py)."""

    study: str
    review_id: int
    sign_id: int  # the correction id of the sign event: a re-signed amendment gets a newer one
    reviewer: str
    generation_id: int
    model_version: str
    image_paths: list[str]
    sentences: list[FinalSentence] = field(default_factory=list)


def _check_text(value: str | None, what: str) -> str:
    if value is None or not isinstance(value, str) or not value.strip():
        raise StoreError(f"{what} is empty")
    if len(value) > MAX_TEXT:
        raise StoreError(f"{what} is {len(value)} characters; the limit is {MAX_TEXT}")
    if "\x00" in value:
        raise StoreError(f"{what} contains a NUL character")
    return value  # verbatim: HTML or script is the viewer's to escape, never the store's to rewrite


def _check_name(value: str | None, what: str) -> str:
    if value is None or not isinstance(value, str) or not value.strip():
        raise StoreError(f"{what} is empty")
    value = value.strip()
    if len(value) > MAX_NAME or any(ord(ch) < 32 for ch in value):
        raise StoreError(f"{what} must be at most {MAX_NAME} printable characters, got {value[:40]!r}")
    return value


def _check_regions(regions: list[str] | None) -> list[str]:
    """An empty list is allowed: "this sentence is about no region" (e.g. "No acute disease.")."""
    if not isinstance(regions, (list, tuple)):
        raise StoreError(f"regions must be a list of CXAS names, got {type(regions).__name__}")
    if len(regions) > MAX_REGIONS:
        raise StoreError(f"{len(regions)} regions given; the limit is {MAX_REGIONS}")
    bad = [r for r in regions if not isinstance(r, str) or not is_valid_name(r)]
    if bad:
        raise StoreError(f"not CXAS class or superclass names: {bad[:5]}")
    return list(dict.fromkeys(regions))  # order kept, duplicates dropped


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _image_size(path: str) -> tuple[int | None, int | None]:
    try:
        from PIL import Image as PILImage
        with PILImage.open(path) as im:
            return im.size
    except Exception:  # DICOM or an unreadable file: registered by hash, size unknown
        return None, None


def guess_view(path: str) -> str | None:
    words = set(os.path.basename(path).lower().replace("-", "_").replace(".", "_").split("_"))
    if words & {"lateral", "lat", "ll", "rl"}:
        return "lateral"
    if words & {"frontal", "pa", "ap"}:
        return "frontal"
    return None


_TRAIL_COLUMNS = (Correction.id, Correction.review_id, Correction.kind, Correction.reviewer, Correction.created_at,
                  Correction.sentence_index, Correction.text, Correction.reason_code, Correction.regions,
                  Correction.target_id)  # the order of CorrectionRecord's fields


def _trail(s: Session, review_id: int) -> list[CorrectionRecord]:
    """The audit trail, oldest first. Plain rows, not ORM objects: every write replays it, so it must be cheap."""
    rows = s.execute(select(*_TRAIL_COLUMNS).where(Correction.review_id == review_id).order_by(Correction.id))
    return [CorrectionRecord(*row) for row in rows]


class Store:
    def __init__(self, url: str | None = None):
        self.engine = make_engine(url)
        self._writer = write_engine(self.engine)
        migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back (nothing written) when it raises."""
        with Session(self._writer, expire_on_commit=False) as s, s.begin():
            yield s

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self.engine) as s, s.begin():
            yield s

    # ---- studies, images, model versions -------------------------------------------------------------------------

    def register_study(self, pseudo_id: str, source: str, images: list[str] | None = None,
                       views: list[str | None] | None = None) -> int:
        """Register a study and its image files (hashed here). Idempotent on `pseudo_id`; an image whose bytes are
        registered already (sha256) is not registered twice — if it belongs to another study, that is an error."""
        pseudo_id, source = _check_name(pseudo_id, "study id"), _check_name(source, "source")
        images = list(images or [])
        views = list(views) if views is not None else [guess_view(p) for p in images]
        if len(views) != len(images):
            raise StoreError(f"{len(images)} images but {len(views)} views")
        files = []
        for path, view in zip(images, views):
            if not os.path.isfile(path):
                raise StoreError(f"image file not found: {path}")
            width, height = _image_size(path)
            files.append(dict(path=os.path.abspath(path), sha256=sha256_file(path), view=view, width=width,
                              height=height, size_bytes=os.path.getsize(path)))
        try:
            return self._register_study(pseudo_id, source, files)
        except IntegrityError:  # a concurrent writer registered the same study or image first: now we see theirs
            return self._register_study(pseudo_id, source, files)

    def _register_study(self, pseudo_id: str, source: str, files: list[dict[str, Any]]) -> int:
        with self._write() as s:
            study = s.scalar(select(Study).where(Study.pseudo_id == pseudo_id))
            if study is None:
                study = Study(pseudo_id=pseudo_id, source=source)
                s.add(study)
                s.flush()
            for f in files:
                owner = s.scalar(select(Image.study_id).where(Image.sha256 == f["sha256"]))
                if owner is None:
                    s.add(Image(study_id=study.id, **f))
                elif owner != study.id:
                    other = s.get(Study, owner).pseudo_id
                    raise StoreError(f"image {f['path']} is already registered to study {other!r} (same sha256)")
            return study.id

    def find_image(self, sha256: str) -> int | None:
        """The study id owning these image bytes, if any."""
        with self._read() as s:
            return s.scalar(select(Image.study_id).where(Image.sha256 == sha256))

    def study(self, study_id: int) -> StudyInfo:
        with self._read() as s:
            st = s.get(Study, study_id)
            if st is None:
                raise NotFoundError(f"no study with id {study_id}")
            return StudyInfo(st.id, st.pseudo_id, st.source, [
                ImageInfo(i.id, i.path, i.sha256, i.view, i.width, i.height, i.size_bytes) for i in st.images])

    def study_id(self, pseudo_id: str) -> int:
        with self._read() as s:
            sid = s.scalar(select(Study.id).where(Study.pseudo_id == pseudo_id))
        if sid is None:
            raise NotFoundError(f"no study {pseudo_id!r}")
        return sid

    def register_model(self, name: str, path: str | None = None, parent: str | None = None,
                       card: dict[str, Any] | None = None) -> int:
        """Idempotent on `name` with the same path; the same name for another path is refused."""
        name = _check_name(name, "model version name")
        path = os.path.abspath(path) if path else None
        try:
            with self._write() as s:
                mv = s.scalar(select(ModelVersion).where(ModelVersion.name == name))
                if mv is not None:
                    if path and mv.path and mv.path != path:
                        raise StoreError(f"model version {name!r} is registered for {mv.path}, not {path}")
                    return mv.id
                parent_id = None
                if parent:
                    parent_id = s.scalar(select(ModelVersion.id).where(ModelVersion.name == parent))
                    if parent_id is None:
                        raise StoreError(f"parent model version {parent!r} is not registered")
                mv = ModelVersion(name=name, path=path, parent_id=parent_id, card=dict(card or {}))
                s.add(mv)
                s.flush()
                return mv.id
        except IntegrityError:  # registered concurrently by another writer: the second call finds it
            return self.register_model(name, path, parent, card)

    def model_version(self, name: str) -> ModelVersionInfo:
        with self._read() as s:
            mv = s.scalar(select(ModelVersion).where(ModelVersion.name == name))
            if mv is None:
                raise NotFoundError(f"no model version {name!r}")
            parent = s.get(ModelVersion, mv.parent_id).name if mv.parent_id else None
            return ModelVersionInfo(mv.id, mv.name, mv.path, parent, dict(mv.card), mv.created_at)

    def model_versions(self) -> list[ModelVersionInfo]:
        """Every registered model version, oldest first (what a model picker offers; a fine-tune names its parent)."""
        with self._read() as s:
            rows = s.scalars(select(ModelVersion).order_by(ModelVersion.id)).all()
            names = {mv.id: mv.name for mv in rows}
            return [ModelVersionInfo(mv.id, mv.name, mv.path, names.get(mv.parent_id), dict(mv.card), mv.created_at)
                    for mv in rows]

    # ---- generations -----------------------------------------------------------------------------------------------

    def add_generation(self, study_id: int, model_version: str, report_output: dict[str, Any],
                       image_path: str | None = None) -> int:
        """Store one model output verbatim (`ReportOutput.to_dict()` shape). An unknown model version name is
        registered on the fly (no path); register it first to keep its path and card."""
        model_version = _check_name(model_version, "model version")
        if not isinstance(report_output, dict):
            raise StoreError("report output must be a dict (ReportOutput.to_dict()), "
                             f"got {type(report_output).__name__}")
        try:
            parsed = ReportOutput.from_dict(report_output)
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"report output is not in the ReportOutput.to_dict() shape: {exc!r}") from exc
        try:
            blob = json.dumps(report_output, allow_nan=False)
        except (TypeError, ValueError) as exc:  # numpy scalars, NaN scores, ...
            raise StoreError(f"report output is not plain JSON: {exc}") from exc
        if len(blob.encode("utf-8")) > MAX_OUTPUT_BYTES:
            raise StoreError(f"report output is larger than {MAX_OUTPUT_BYTES} bytes as JSON")
        output = json.loads(blob)  # kept as given (extra keys included), only made plain JSON
        indices = [s.index for s in parsed.sentences]
        if len(set(indices)) != len(indices):
            raise StoreError(f"sentence indices are not unique: {indices}")
        bad = [s.verdict for s in parsed.sentences if s.verdict not in VERDICTS + (None,)]
        if bad:
            raise StoreError(f"unknown verdicts {bad}; expected one of {VERDICTS} or null")
        for s in parsed.sentences:
            _check_text(s.text, f"sentence {s.index}")
        try:
            return self._add_generation(study_id, model_version, parsed, output, image_path)
        except IntegrityError:  # another writer registered the same new model version name first
            return self._add_generation(study_id, model_version, parsed, output, image_path)

    def _add_generation(self, study_id: int, model_version: str, parsed: ReportOutput, output: dict[str, Any],
                        image_path: str | None) -> int:
        with self._write() as s:
            if s.get(Study, study_id) is None:
                raise NotFoundError(f"no study with id {study_id}")
            image_id = None
            if image_path:
                image_id = s.scalar(select(Image.id).where(Image.study_id == study_id,
                                                           Image.path == os.path.abspath(image_path)))
                if image_id is None:
                    raise StoreError(f"{image_path} is not a registered image of study {study_id}")
            mv_id = s.scalar(select(ModelVersion.id).where(ModelVersion.name == model_version))
            if mv_id is None:
                mv = ModelVersion(name=model_version, path=None, card={})
                s.add(mv)
                s.flush()
                mv_id = mv.id
            g = Generation(study_id=study_id, model_version_id=mv_id, image_id=image_id, report=parsed.report,
                           output=output, timings=dict(parsed.timings), n_sentences=len(parsed.sentences),
                           n_ungrounded=sum(x.verdict == "ungrounded" for x in parsed.sentences))
            s.add(g)
            s.flush()
            return g.id

    def generation(self, generation_id: int) -> GenerationInfo:
        with self._read() as s:
            g = s.get(Generation, generation_id)
            if g is None:
                raise NotFoundError(f"no generation with id {generation_id}")
            return GenerationInfo(g.id, g.study_id, s.get(ModelVersion, g.model_version_id).name, g.report,
                                  g.output, g.n_ungrounded, g.created_at)

    def studies_without_generation(self, model_version: str) -> list[StudyInfo]:
        """Studies this model version has not reported on yet (what `db generate` works through)."""
        with self._read() as s:
            done = select(Generation.study_id).join(ModelVersion).where(ModelVersion.name == model_version)
            ids = s.scalars(select(Study.id).where(Study.id.not_in(done)).order_by(Study.id)).all()
        return [self.study(i) for i in ids]

    # ---- reviews ---------------------------------------------------------------------------------------------------

    def start_review(self, study_id: int, reviewer: str, generation_id: int | None = None) -> int:
        """The review of the study's latest generation (or of `generation_id`); opened if there is none yet.
        Two reviewers starting at once share one review."""
        reviewer = _check_name(reviewer, "reviewer")
        try:
            with self._write() as s:
                if generation_id is None:
                    generation_id = s.scalar(select(func.max(Generation.id)).where(Generation.study_id == study_id))
                    if generation_id is None:
                        if s.get(Study, study_id) is None:
                            raise NotFoundError(f"no study with id {study_id}")
                        raise StoreError(f"study {study_id} has no generation to review yet")
                g = s.get(Generation, generation_id)
                if g is None or g.study_id != study_id:
                    raise NotFoundError(f"no generation {generation_id} for study {study_id}")
                rid = s.scalar(select(Review.id).where(Review.generation_id == generation_id))
                if rid is not None:
                    return rid
                r = Review(generation_id=generation_id, study_id=study_id, reviewer=reviewer, status="new")
                s.add(r)
                s.flush()
                return r.id
        except IntegrityError:  # the other reviewer's insert won the unique(generation_id) race
            return self.start_review(study_id, reviewer, generation_id)

    def review(self, review_id: int) -> ReviewInfo:
        with self._read() as s:
            r = s.get(Review, review_id)
            if r is None:
                raise NotFoundError(f"no review with id {review_id}")
            return ReviewInfo(r.id, r.study_id, r.generation_id, r.reviewer, r.status, r.signed_at)

    def _locked_review(self, s: Session, review_id: int) -> Review:
        r = s.get(Review, review_id, with_for_update=True)  # PostgreSQL: row lock; SQLite: BEGIN IMMEDIATE did it
        if r is None:
            raise NotFoundError(f"no review with id {review_id}")
        return r

    def _state(self, s: Session, r: Review) -> tuple[list[FinalSentence], list[CorrectionRecord]]:
        trail = _trail(s, r.id)
        output = s.scalar(select(Generation.output).where(Generation.id == r.generation_id))
        return replay(output["sentences"], trail), trail

    def _append(self, s: Session, r: Review, kind: str, reviewer: str, **fields: Any) -> int:
        c = Correction(review_id=r.id, kind=kind, reviewer=reviewer, created_at=utcnow(), **fields)
        s.add(c)
        r.updated_at = c.created_at
        s.flush()
        return c.id

    def apply_correction(self, review_id: int, kind: str, reviewer: str, sentence_index: int | None = None,
                         text: str | None = None, reason_code: str | None = None,
                         regions: list[str] | None = None) -> int:
        """Append one content correction and return its id.

        edit(sentence_index, text) · delete(sentence_index) · add(text[, regions]) → the new sentence gets the next
        free index · flag(sentence_index, reason_code[, text=note]) · relink(sentence_index, regions) ·
        accept([sentence_index]; without one: every sentence still standing)."""
        if kind not in CONTENT_KINDS:
            raise StoreError(f"unknown correction kind {kind!r}; expected one of {CONTENT_KINDS} "
                             "(use undo_last, sign or amend for the others)")
        reviewer = _check_name(reviewer, "reviewer")
        fields: dict[str, Any] = {}
        if kind in ("edit", "add"):
            fields["text"] = _check_text(text, "text")
        if kind == "flag":
            if reason_code not in REASON_CODES:
                raise StoreError(f"unknown reason code {reason_code!r}; expected one of {REASON_CODES}")
            fields["reason_code"] = reason_code
            if text is not None:
                fields["text"] = _check_text(text, "note")
        if kind == "relink" or (kind == "add" and regions is not None):
            fields["regions"] = _check_regions(regions)
        with self._write() as s:
            r = self._locked_review(s, review_id)
            if r.status == "signed":
                raise StoreError(f"review {review_id} is signed; amend it first (amend) to change it")
            sentences, trail = self._state(s, r)
            standing = {x.index for x in sentences if not x.deleted}
            if kind == "add":
                used = {x.index for x in sentences} | {c.sentence_index for c in trail if c.kind == "add"}
                fields["sentence_index"] = max(used, default=-1) + 1  # never reused, even after an undone add
            elif not (kind == "accept" and sentence_index is None):
                if sentence_index not in standing:
                    raise StoreError(f"unknown sentence index {sentence_index} in review {review_id}; "
                                     f"the report has sentences {sorted(standing)}")
                fields["sentence_index"] = sentence_index
            if r.status == "new":
                r.status = "in_review"
            return self._append(s, r, kind, reviewer, **fields)

    def undo_last(self, review_id: int, reviewer: str) -> int:
        """Undo the newest content correction still in force by appending a `revert` that points at it. Only what
        was done since the last sign or amend event can be undone: a signed version is changed by corrections."""
        reviewer = _check_name(reviewer, "reviewer")
        with self._write() as s:
            r = self._locked_review(s, review_id)
            if r.status == "signed":
                raise StoreError(f"review {review_id} is signed; amend it first (amend) to change it")
            trail = _trail(s, r.id)
            reverted = {c.target_id for c in trail if c.kind == "revert"}
            since = max((c.id for c in trail if c.kind in EVENT_KINDS), default=0)
            live = [c for c in trail if c.kind in CONTENT_KINDS and c.id not in reverted and c.id > since]
            if not live:
                raise StoreError(f"review {review_id} has nothing to undo"
                                 + (" since it was last signed or amended" if since else ""))
            return self._append(s, r, "revert", reviewer, target_id=max(c.id for c in live))

    def sign(self, review_id: int, reviewer: str) -> int:
        reviewer = _check_name(reviewer, "reviewer")
        with self._write() as s:
            r = self._locked_review(s, review_id)
            if r.status == "signed":
                raise StoreError(f"review {review_id} is signed already")
            sentences, _ = self._state(s, r)
            if not any(not x.deleted for x in sentences):
                raise StoreError(f"review {review_id} has no sentence left; add one before signing")
            cid = self._append(s, r, "sign", reviewer)
            r.status, r.signed_at = "signed", r.updated_at
            return cid

    def amend(self, review_id: int, reviewer: str, note: str | None = None) -> int:
        """Re-open a signed review; the signed version stays in the trail (and in any export already made)."""
        reviewer = _check_name(reviewer, "reviewer")
        note = _check_text(note, "note") if note is not None else None
        with self._write() as s:
            r = self._locked_review(s, review_id)
            if r.status != "signed":
                raise StoreError(f"review {review_id} is {r.status}, not signed: there is nothing to amend")
            cid = self._append(s, r, "amend", reviewer, text=note)
            r.status = "amended"
            return cid

    def corrections(self, review_id: int) -> list[CorrectionRecord]:
        """The audit trail, oldest first."""
        with self._read() as s:
            if s.get(Review, review_id) is None:
                raise NotFoundError(f"no review with id {review_id}")
            return _trail(s, review_id)

    def final_report(self, review_id: int, include_deleted: bool = False) -> list[FinalSentence]:
        with self._read() as s:
            r = s.get(Review, review_id)
            if r is None:
                raise NotFoundError(f"no review with id {review_id}")
            sentences, _ = self._state(s, r)
        return sentences if include_deleted else [x for x in sentences if not x.deleted]

    def final_text(self, review_id: int) -> str:
        return report_text(self.final_report(review_id))

    # ---- worklist and export support --------------------------------------------------------------------------------

    def worklist(self, order: str = "most_ungrounded", status: str | None = None,
                 limit: int | None = None) -> list[WorklistItem]:
        """One row per study, about its latest generation."""
        if order not in WORKLIST_ORDERS:
            raise StoreError(f"unknown worklist order {order!r}; expected one of {WORKLIST_ORDERS}")
        latest = (select(Generation.study_id, func.max(Generation.id).label("gid"))
                  .group_by(Generation.study_id).subquery())
        q = (select(Study, Generation, ModelVersion.name, Review)
             .outerjoin(latest, latest.c.study_id == Study.id)
             .outerjoin(Generation, Generation.id == latest.c.gid)
             .outerjoin(ModelVersion, ModelVersion.id == Generation.model_version_id)
             .outerjoin(Review, Review.generation_id == Generation.id))
        if order == "most_ungrounded":
            q = q.order_by(func.coalesce(Generation.n_ungrounded, -1).desc(), Study.id)
        else:
            q = q.order_by(Study.id.asc() if order == "oldest" else Study.id.desc())
        items = []
        with self._read() as s:
            for st, g, mv_name, r in s.execute(q):
                item = WorklistItem(study_id=st.id, pseudo_id=st.pseudo_id, status=r.status if r else "new",
                                    model_version=mv_name, generation_id=g.id if g else None,
                                    n_sentences=g.n_sentences if g else 0, n_ungrounded=g.n_ungrounded if g else 0,
                                    review_id=r.id if r else None, reviewer=r.reviewer if r else None,
                                    created_at=st.created_at)
                if status is None or item.status == status:
                    items.append(item)
        return items[:limit] if limit else items

    def signed_versions(self) -> dict[str, tuple[int, int]]:
        """study pseudo id → (review id, sign correction id) of its newest sign event. A review amended since keeps
        its last signed version here until it is signed again."""
        latest_sign = (select(Correction.review_id, func.max(Correction.id).label("sign_id"))
                       .where(Correction.kind == "sign").group_by(Correction.review_id).subquery())
        q = (select(Study.pseudo_id, Review.id, latest_sign.c.sign_id)
             .join(Review, Review.study_id == Study.id).join(latest_sign, latest_sign.c.review_id == Review.id)
             .order_by(latest_sign.c.sign_id))
        with self._read() as s:
            return {pid: (rid, sid) for pid, rid, sid in s.execute(q)}  # newest sign wins per study

    def signed_report(self, review_id: int) -> SignedReport:
        """The review as it was at its last sign event (an amendment in progress after it is not included)."""
        with self._read() as s:
            r = s.get(Review, review_id)
            if r is None:
                raise NotFoundError(f"no review with id {review_id}")
            g = s.get(Generation, r.generation_id)
            trail = _trail(s, r.id)
            if not any(c.kind == "sign" for c in trail):
                raise StoreError(f"review {review_id} has never been signed")
            sign = max((c for c in trail if c.kind == "sign"), key=lambda c: c.id)
            sentences = replay(g.output["sentences"], [c for c in trail if c.id < sign.id])
            st = s.get(Study, r.study_id)
            images = [i.path for i in st.images]
            if g.image_id is not None:  # the image the model saw goes first
                seen = s.get(Image, g.image_id).path
                images = [seen] + [p for p in images if p != seen]
            return SignedReport(study=st.pseudo_id, review_id=r.id, sign_id=sign.id, reviewer=sign.reviewer,
                                generation_id=g.id, model_version=s.get(ModelVersion, g.model_version_id).name,
                                image_paths=images, sentences=sentences)

    def record_export(self, out_dir: str, full: bool, what: dict[str, Any], manifest_sha256: str) -> int:
        with self._write() as s:
            e = Export(out_dir=os.path.abspath(out_dir), full=full, what=what, manifest_sha256=manifest_sha256)
            s.add(e)
            s.flush()
            return e.id

    def counts(self) -> dict[str, int]:
        with self._read() as s:
            return {t.__tablename__: s.scalar(select(func.count()).select_from(t))
                    for t in (Study, Image, ModelVersion, Generation, Review, Correction, Export)}

