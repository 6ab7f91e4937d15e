"""The review service behind every screen and API call: the case list, the per-case analysis cache, and the review
actions, each saved through the store at once. Plain data in, plain data out; no UI here."""
from __future__ import annotations

import hashlib
import os
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np
from PIL import Image

from model.atomic import atomic_path
from model.imageio import WORK_SIDE, acquisition_tags, read_radiograph
from model.progress import ProgressEvent
from review.analysis_queue import AnalysisQueue
from review.finetune import finetune_command, run_finetune
from review.regrounding import Regrounder
from review.analyser import read_card
from review.promotion import comparison_markdown, refusal, summary_line
from review.store import ReviewStore
from model.types import CaseAnalysis
from review.types import ACTIONS, CORRECTION_KINDS, DISCLAIMER, Analyser, Case, ReviewState

CACHE_SIZE = 16
# Longest side of an upload's stored pixels: the full resolution of any detector we know (43 cm at 0.05 mm); a
# larger image is kept reduced to it, so storing and hashing it stays within the memory bound.
KEEP_SIDE = 8192
FULL_CACHE = 2


class ReviewService:
    """Cases, analysis (cached per case and model version) and the review store."""

    def __init__(self, analyser: Analyser, store: ReviewStore, cases: Sequence[Case], data_dir: str,
                 load_analyser: Callable[[str], Analyser] | None = None, models: dict[str, str] | None = None,
                 finetune_data: str | None = None, finetune_cmd: Callable[..., list[str]] | None = None,
                 cache_size: int = CACHE_SIZE):
        self.analyser = analyser
        self.finetune_data = finetune_data  # the training set replayed during fine-tuning (docs/model.md)
        self.finetune_cmd = finetune_cmd or finetune_command
        self._ft_cancel = threading.Event()
        self.last_fine_tune: str | None = None  # the version the last fine-tune made (its gate is shown)
        self._load_analyser = load_analyser
        self.models = dict(models or {})  # model version -> directory, for the Model tab
        self.store = store
        self.data_dir = os.path.abspath(data_dir)
        os.makedirs(os.path.join(self.data_dir, "uploads"), exist_ok=True)
        self.cases: dict[str, Case] = {}
        self._cache: OrderedDict[tuple[str, str], tuple[np.ndarray, CaseAnalysis]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()  # guards the cache, shared by all browser sessions
        self._queue = AnalysisQueue()  # one analysis at a time, in order: a heavy image delays only analyses
        self._stored: set[tuple[str, str]] = set()  # (model version, case) whose generation is in the store
        self._regrounder = Regrounder()
        self._full: OrderedDict[str, np.ndarray] = OrderedDict()  # case -> full-resolution uint16 pixels
        for c in cases:
            self.add_case(c)
        for c in store.saved_uploads():  # uploads of earlier runs reopen from their stored pixels
            if c.case_id not in self.cases and os.path.isfile(c.image_path):
                self.cases[c.case_id] = c

    def add_case(self, case: Case, tags: dict | None = None) -> Case:
        self.store.register_case(case, tags)
        self.cases[case.case_id] = case
        return case

    def case(self, case_id: str) -> Case:
        if case_id not in self.cases:
            raise KeyError(f"unknown case {case_id!r}; open one from the worklist")
        return self.cases[case_id]

    # -- opening -------------------------------------------------------------------------------------------------
    def open(self, case_id: str) -> tuple[np.ndarray, CaseAnalysis]:
        """The radiograph and its analysis (analysed once, then served from the cache); the report is stored as a
        generation the first time this model version reports on the case."""
        image, analysis = self._analysis(case_id)
        key = (analysis.report.model_version, case_id)
        if key not in self._stored:
            if not self.store.has_generation(case_id, analysis.report.model_version):
                self.store.add_generation(case_id, analysis.report)
            self._stored.add(key)
        return image, analysis

    def _analysis(self, case_id: str) -> tuple[np.ndarray, CaseAnalysis]:
        self.case(case_id)
        hit = self._cached(case_id)
        return hit if hit is not None else self.analyse_later(case_id).result()

    def analyse_later(self, case_id: str) -> Future:
        """Queue the case's analysis (or join the one queued); the future gives (image, analysis). The image is the
        working-size copy (WORK_SIDE): what the models see and what the overlays are drawn on."""
        case, analyser = self.case(case_id), self.analyser

        def job() -> tuple[np.ndarray, CaseAnalysis]:
            hit = self._cached(case_id)
            if hit is not None:
                return hit
            image = read_radiograph(case.image_path, max_side=WORK_SIDE)  # H×W float32 in [0, 1]
            analysis = analyser.analyse(image, acquisition=case.acquisition)
            with self._lock:
                self._cache[(analyser.model_version, case_id)] = (image, analysis)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            return image, analysis

        return self._queue.submit((analyser.model_version, case_id), job)

    def full_image(self, case_id: str) -> np.ndarray:
        """The film at its stored resolution and bit depth (up to KEEP_SIDE a side) as uint16, for zoom and
        window / level; the last FULL_CACHE films are kept (an 8192² film is 128 MB)."""
        case = self.case(case_id)
        with self._lock:
            hit = self._full.get(case_id)
            if hit is not None:
                self._full.move_to_end(case_id)
                return hit
        pixels = np.round(read_radiograph(case.image_path, max_side=KEEP_SIDE) * 65535).astype(np.uint16)
        with self._lock:
            self._full[case_id] = pixels
            while len(self._full) > FULL_CACHE:
                self._full.popitem(last=False)
        return pixels

    def is_analysed(self, case_id: str) -> bool:
        return self._cached(case_id) is not None

    def queue_position(self, case_id: str) -> int:
        """0: analysing now (or not waiting); k: k-th in line behind the analysis that is running."""
        return self._queue.position((self.analyser.model_version, case_id))

    def _cached(self, case_id: str) -> tuple[np.ndarray, CaseAnalysis] | None:
        with self._lock:
            key = (self.analyser.model_version, case_id)
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
            return hit

    def upload(self, data: bytes) -> Case:
        """Register an uploaded PNG/JPEG/DICOM. Only pixels are kept (saved as PNG, at most KEEP_SIDE a side) and,
        of a DICOM, the five non-identifying acquisition tags; the id is a hash of the pixels, so no patient tag or
        file name is shown or stored. Raises ImageReadError, or the analyser's ValueError (e.g. segmentation
        finding no lung field), naming the problem; then nothing is registered and no file is left behind."""
        image = read_radiograph(data, max_side=KEEP_SIDE)  # raises ImageReadError naming the problem
        pixels = np.round(image * 65535).astype(np.uint16)
        del image
        case_id = "upload-" + hashlib.sha256(pixels.tobytes()).hexdigest()[:10]
        if case_id in self.cases:
            return self.cases[case_id]
        path = os.path.join(self.data_dir, "uploads", case_id + ".png")
        created = not os.path.exists(path)
        if created:
            with atomic_path(path, ".png") as tmp:
                # Fastest zlib level: an 8192² 16-bit image saves in 1.75 s instead of 5.5 s, 23 MB instead of 17 MB.
                Image.fromarray(pixels).save(tmp, format="PNG", compress_level=1)
        del pixels
        # Analyse before registering: an image the model cannot read (no lung field, ...) leaves no worklist row.
        case = Case(case_id, "upload", path, acquisition_tags(data))
        self.cases[case_id] = case
        try:
            self._analysis(case_id)
            return self.add_case(case, case.acquisition)
        except BaseException:
            del self.cases[case_id]
            if created and os.path.exists(path):
                os.remove(path)
            raise

    # -- reviewing -----------------------------------------------------------------------------------------------
    def state(self, case_id: str) -> ReviewState:
        """The case's review as the store replays it, with the reviewer's own sentences (edits, additions)
        grounded again on the film (review/regrounding.py) once the case is analysed."""
        state = self.store.state(case_id)
        hit = self._cached(case_id)
        if hit is not None:
            self._regrounder.apply(self.analyser, state, *hit)
        return state

    def apply(self, case_id: str, reviewer: str, kind: str, index: int | None = None, text: str | None = None,
              regions: Sequence[str] = (), reason: str | None = None, override: bool = False,
              key: str | None = None, unreviewed: int | None = None) -> str:
        """One review action through the store, saved at once; returns the confirmation. Raises ValueError naming
        the problem (nothing saved). `override` (sign / amend over another reviewer's signature) takes `text` as
        the note saying why; `key` is the client's idempotency key: a retry with it is not applied twice.
        `unreviewed`: sign only, the number of undecided sentences the signer confirms leaving (the store refuses
        a sign with undecided sentences without it, db.reviews.UnreviewedError)."""
        self.case(case_id)
        if kind == "undo":
            return self.store.undo(case_id, reviewer, key=key)
        if kind == "sign":
            try:
                return self.store.sign(case_id, reviewer, override=override, note=text or None, key=key,
                                       unreviewed=unreviewed)
            except ValueError as exc:
                raise self._with_regrounded_ungrounded(case_id, exc) from None
        if kind == "amend":
            return self.store.amend(case_id, reviewer, override=override, note=text or None, key=key)
        if kind in CORRECTION_KINDS:
            return self.store.correct(case_id, reviewer, kind, index=index, text=text, regions=regions,
                                      reason=reason, key=key)
        raise ValueError(f"unknown action {kind!r}; expected one of {list(ACTIONS)}")

    def _with_regrounded_ungrounded(self, case_id: str, exc: ValueError) -> ValueError:
        """A refused sign (db.reviews.UnreviewedError) lists the ungrounded sentences by the model's verdicts; the
        reviewer's own words are graded only here, so their re-grounded ungrounded ones are added to the list."""
        if getattr(exc, "check", None) is None:
            return exc
        state = self.state(case_id)
        mine = [s for s in state.current if s.index in state.regrounded and s.verdict == "ungrounded"
                and s.index not in state.flags]
        if not mine:
            return exc
        listed = ", ".join(f'#{s.index + 1} "{s.text}"' for s in mine)
        return type(exc)(f"{exc} (re-grounded on the reviewer's words and ungrounded: {listed})", exc.check)

    def generate_payload(self, case_id: str) -> dict:
        """The API's `/generate`: the model's report with per-sentence regions and verdicts, and the review."""
        _, analysis = self.open(case_id)
        state = self.state(case_id)
        return {"case_id": case_id, "model_version": analysis.report.model_version,
                "report": analysis.report.to_dict(), "review": state.to_dict(), "disclaimer": DISCLAIMER}

    # -- models, export, fine-tuning -----------------------------------------------------------------------------
    def switch_model(self, version: str, force: bool = False) -> str:
        """Serve another model version; cached analyses are dropped, and each case gets a new report (and a new
        review) from this version when next opened. A fine-tuned version that did not pass the promotion gate
        (review/promotion.py) is refused unless `force`."""
        if version == self.analyser.model_version:
            return f"model {version} is already in use"
        if version not in self.models or self._load_analyser is None:
            raise ValueError(f"unknown model version {version!r}; available: {sorted(self.models)}")
        why = refusal({"name": version, **read_card(self.models[version])})  # issue 18: the promotion gate
        if why and not force:
            raise ValueError(f"{why}; tick the override to use it anyway")
        analyser = self._load_analyser(self.models[version])
        with self._lock:
            self.analyser = analyser
            self._cache.clear()
        return f"now using model {analyser.model_version}"

    def cancel_fine_tune(self) -> str:
        self._ft_cancel.set()
        return "cancelling the fine-tune"

    def gate_markdown(self, version: str) -> str:
        """The promotion gate's comparison of `version` with its parent (empty for a version without a card)."""
        return comparison_markdown(read_card(self.models[version])) if version in self.models else ""

    def signed_report_fhir(self, case_id: str) -> dict:
        """The case's signed report in HL7 FHIR R4 (a Bundle around its DiagnosticReport), for download and the API."""
        if case_id not in self.cases:
            raise KeyError(f"unknown case {case_id!r}")
        return self.store.signed_fhir(case_id)

    def export(self) -> tuple[str, str]:
        """Export signed reviews (incrementally) to data_dir/export and zip them for download."""
        result = self.store.export(os.path.join(self.data_dir, "export"))
        zpath = os.path.join(self.data_dir, "groundcxr-export.zip")
        with atomic_path(zpath, ".zip") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in result.files:
                zf.write(f, arcname=os.path.basename(f))
        return result.message, zpath

    def fine_tune(self, progress: Callable[[float, str], None]) -> str:
        """Export the signed reviews, fine-tune the current model on them in a child process, and offer the result
        in the Model tab. progress(fraction, description) follows the trainer's progress events."""
        if not self.finetune_data:
            raise ValueError("fine-tuning needs the training set to replay: start the app with --finetune-data DIR")
        init = self.models.get(self.analyser.model_version)
        if init is None:
            raise ValueError(f"the model in use ({self.analyser.model_version}) has no directory to start from")
        export_dir = os.path.join(self.data_dir, "export")
        n = self.store.export(export_dir).n_entries
        if n == 0:
            raise ValueError("there is no signed review to learn from yet; sign at least one report")
        progress(0.0, f"fine-tuning on {n} signed reports")

        def on_event(ev: ProgressEvent) -> None:
            progress(ev.fraction, ev.description)

        self._ft_cancel.clear()
        r = run_finetune(export_dir, n, init, self.analyser.model_version, self.finetune_data,
                         os.path.join(self.data_dir, "models"), on_event, self.finetune_cmd, self._ft_cancel.is_set)
        self.models[r.name] = r.checkpoint
        self.last_fine_tune = r.name
        progress(1.0, "done")
        return (f"fine-tuned model {r.name} is ready (from {n} signed reports); it "
                f"{summary_line(read_card(r.checkpoint))}; choose it in the Model tab to use it")
