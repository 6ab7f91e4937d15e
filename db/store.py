"""The review store's service API: what the app and the CLI call. Every write is one transaction.

    store = Store("sqlite:///groundcxr.db")            # migrations are applied here
    sid = store.register_study("S-0001", "phantom", images=["a.png"])
    gid = store.add_generation(sid, "s2d-tiny-v1", report_output.to_dict())
    rid = store.start_review(sid, "dr.a")
    store.apply_correction(rid, "edit", "dr.a", sentence_index=1, text="No pleural effusion.",
                           idempotency_key="3f1c...")   # a retry with the same key is not applied twice
    store.undo_last(rid, "dr.a")                        # appends a "revert", deletes nothing
    store.sign(rid, "dr.a")
    store.amend(rid, "dr.b", note="...", override=True)  # another's signed report: an explicit, recorded override
    store.final_report(rid)                            # list[FinalSentence] with provenance

Review states: new -> in_review (first correction) -> signed; signed -> amended (amend) -> signed (sign again).
Studies, images, model versions, generations, the worklist and export support live here; the review life cycle in
db/reviews.py; the records returned and the input checks in db/records.py.
Errors are `StoreError` (or `NotFoundError`) with a message naming the problem; a failed call writes nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.engine import make_engine, migrate, write_engine
from db.models import Correction, Export, Generation, Image, ModelVersion, Review, Study
from db.records import (ACQUISITION_TAGS, MAX_OUTPUT_BYTES, MAX_REGIONS, MAX_TEXT, WORKLIST_ORDERS,  # noqa: F401
                        GenerationInfo, ImageInfo, ModelVersionInfo, NotFoundError, ReviewInfo, SignedReport,
                        StoreError, StudyInfo, WorklistItem, check_name, check_tags, check_text)
from db.replay import model_sections, replay
from db.reviews import ReviewLog, trail
from model.types import VERDICTS, ReportOutput

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


def _study_info(st: Study) -> StudyInfo:
    return StudyInfo(st.id, st.pseudo_id, st.source, [
        ImageInfo(i.id, i.path, i.sha256, i.view, i.width, i.height, i.size_bytes, dict(i.tags or {}))
        for i in st.images])


class Store(ReviewLog):
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
                       views: list[str | None] | None = None, tags: list[dict[str, Any] | None] | None = None) -> int:
        """Register a study and its image files (hashed here). Idempotent on `pseudo_id`; an image whose bytes are
        registered already (sha256) is not registered twice — if it belongs to another study, that is an error.
        `tags`: per image, only non-identifying acquisition tags (records.ACQUISITION_TAGS); an upload registers
        its stored pixel file here, so that it reopens after a restart (`studies(source=...)`)."""
        pseudo_id, source = check_name(pseudo_id, "study id"), check_name(source, "source")
        images = list(images or [])
        views = list(views) if views is not None else [guess_view(p) for p in images]
        tags = [check_tags(t) for t in tags] if tags is not None else [{} for _ in images]
        if len(views) != len(images) or len(tags) != len(images):
            raise StoreError(f"{len(images)} images but {len(views)} views and {len(tags)} tag sets")
        files = []
        for path, view, tag in zip(images, views, tags):
            if not os.path.isfile(path):
                raise StoreError(f"image file not found: {path}")
            width, height = _image_size(path)
            files.append(dict(path=os.path.abspath(path), sha256=sha256_file(path), view=view, width=width,
                              height=height, size_bytes=os.path.getsize(path), tags=tag))
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
            return _study_info(st)

    def studies(self, source: str | None = None) -> list[StudyInfo]:
        """Every study (of this source, e.g. the app's uploads), oldest first, with its images."""
        with self._read() as s:
            q = select(Study).order_by(Study.id)
            if source is not None:
                q = q.where(Study.source == check_name(source, "source"))
            return [_study_info(st) for st in s.scalars(q)]

    def study_id(self, pseudo_id: str) -> int:
        with self._read() as s:
            sid = s.scalar(select(Study.id).where(Study.pseudo_id == pseudo_id))
        if sid is None:
            raise NotFoundError(f"no study {pseudo_id!r}")
        return sid

    def register_model(self, name: str, path: str | None = None, parent: str | None = None,
                       card: dict[str, Any] | None = None) -> int:
        """Idempotent on `name` with the same path; the same name for another path is refused."""
        name = check_name(name, "model version name")
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
        model_version = check_name(model_version, "model version")
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
            check_text(s.text, f"sentence {s.index}")
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
                           n_ungrounded=sum(x.verdict == "ungrounded" for x in parsed.sentences),
                           out_of_domain=None if not parsed.domain else parsed.out_of_domain)
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
        if order == "most_ungrounded":  # films the model cannot read first: every sentence needs the reviewer
            q = q.order_by(func.coalesce(Generation.out_of_domain, False).desc(),
                           func.coalesce(Generation.n_ungrounded, -1).desc(), Study.id)
        else:
            q = q.order_by(Study.id.asc() if order == "oldest" else Study.id.desc())
        items = []
        with self._read() as s:
            for st, g, mv_name, r in s.execute(q):
                item = WorklistItem(study_id=st.id, pseudo_id=st.pseudo_id, status=r.status if r else "new",
                                    model_version=mv_name, generation_id=g.id if g else None,
                                    n_sentences=g.n_sentences if g else 0, n_ungrounded=g.n_ungrounded if g else 0,
                                    review_id=r.id if r else None, reviewer=r.reviewer if r else None,
                                    created_at=st.created_at, out_of_domain=g.out_of_domain if g else None)
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
            events = trail(s, r.id)
            if not any(c.kind == "sign" for c in events):
                raise StoreError(f"review {review_id} has never been signed")
            sign = max((c for c in events if c.kind == "sign"), key=lambda c: c.id)
            sentences = replay(g.output["sentences"], [c for c in events if c.id < sign.id])
            st = s.get(Study, r.study_id)
            images = [i.path for i in st.images]
            if g.image_id is not None:  # the image the model saw goes first
                seen = s.get(Image, g.image_id).path
                images = [seen] + [p for p in images if p != seen]
            return SignedReport(study=st.pseudo_id, review_id=r.id, sign_id=sign.id, reviewer=sign.reviewer,
                                generation_id=g.id, model_version=s.get(ModelVersion, g.model_version_id).name,
                                image_paths=images, sentences=sentences, signed_at=sign.created_at,
                                signature=sum(c.kind == "sign" and c.id <= sign.id for c in events),
                                sections=model_sections(g.output))

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
