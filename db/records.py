"""What the review store hands out and what it refuses: the plain records its queries return, its errors, and the
checks every request passes before a transaction starts (so a refused request writes nothing)."""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from db.names import IdentityError, normalise_name
from db.replay import FinalSentence
from model.taxonomy import is_valid_name

MAX_TEXT = 2_000  # characters in one sentence or note: a sentence, not a document
MAX_REGIONS = 64
MAX_OUTPUT_BYTES = 1_000_000  # one ReportOutput.to_dict() as JSON
WORKLIST_ORDERS = ("most_ungrounded", "oldest", "newest")
# The only acquisition tags kept about an image: none of them identifies a patient (docs/security.md).
ACQUISITION_TAGS = ("view_position", "pixel_spacing", "bits_stored", "photometric_interpretation", "modality")
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:\-]{8,128}")
# C0 and C1 controls other than tab and newline: ESC starts a terminal escape sequence, and no sentence needs any.
_TEXT_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


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
    tags: dict[str, Any] = field(default_factory=dict)  # ACQUISITION_TAGS only


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
    signed_by: str | None = None  # who signed it last; None before the first sign


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
    out_of_domain: bool | None = None  # the latest generation's film outside the model's gate; None: not known


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
    signed_at: dt.datetime | None = None  # of this sign event (UTC)
    signature: int = 1  # 1 for the first signature; 2, 3, ... for a report re-signed after an amendment
    sections: dict[int, str] = field(default_factory=dict)  # model sentence index -> its header (replay.model_sections)


def check_text(value: str | None, what: str) -> str:
    if value is None or not isinstance(value, str) or not value.strip():
        raise StoreError(f"{what} is empty")
    if len(value) > MAX_TEXT:
        raise StoreError(f"{what} is {len(value)} characters; the limit is {MAX_TEXT}")
    bad = _TEXT_CONTROLS.search(value)
    if bad:
        raise StoreError(f"{what} contains the control character U+{ord(bad.group()):04X}"
                         + (" (NUL)" if bad.group() == "\x00" else " (ESC)" if bad.group() == "\x1b" else ""))
    # Otherwise verbatim: HTML is the viewer's to escape and bidi text the terminal's (db.names.safe_display).
    return value


def check_name(value: str | None, what: str) -> str:
    """A reviewer's name is held to one script (db/names.py); a study id, model version or source is not."""
    try:
        return normalise_name(value, what, one_script=(what == "reviewer"))
    except IdentityError as exc:
        raise StoreError(str(exc)) from None


def check_regions(regions: list[str] | None) -> list[str]:
    """An empty list is allowed: "this sentence is about no region" (e.g. "No acute disease.")."""
    if not isinstance(regions, (list, tuple)):
        raise StoreError(f"regions must be a list of CXAS names, got {type(regions).__name__}")
    if len(regions) > MAX_REGIONS:
        raise StoreError(f"{len(regions)} regions given; the limit is {MAX_REGIONS}")
    bad = [r for r in regions if not isinstance(r, str) or not is_valid_name(r)]
    if bad:
        raise StoreError(f"not CXAS class or superclass names: {bad[:5]}")
    return list(dict.fromkeys(regions))  # order kept, duplicates dropped


def check_idempotency_key(key: str | None) -> str | None:
    """A client-chosen key (e.g. a UUID) naming one correction request, so that a retry is not applied twice."""
    if key is None:
        return None
    if not isinstance(key, str) or not _IDEMPOTENCY_KEY.fullmatch(key):
        raise StoreError("idempotency key must be 8 to 128 characters of letters, digits and . _ : - "
                         f"(e.g. a UUID), got {str(key)[:40]!r}")
    return key


def check_tags(tags: dict[str, Any] | None) -> dict[str, Any]:
    """Only the acquisition tags in ACQUISITION_TAGS, as plain scalars or short lists; anything else (a patient
    name, a date, an institution) is refused rather than quietly stored."""
    tags = dict(tags or {})
    unknown = sorted(set(tags) - set(ACQUISITION_TAGS))
    if unknown:
        raise StoreError(f"image tags {unknown} are not stored (only {', '.join(ACQUISITION_TAGS)})")
    for key, value in tags.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        if len(values) > 4 or not all(isinstance(v, (int, float, str)) and len(str(v)) <= 64 for v in values):
            raise StoreError(f"image tag {key} must be a short number, text or pair, got {str(value)[:40]!r}")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in tags.items()}
