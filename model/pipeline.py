"""End-to-end analysis of one radiograph: segment -> generate -> ground. The app and `python -m model generate
--ground` use this; everything returned is a plain type from model/types.py.

    p = Pipeline(model_dir=None, seg_backend="unet")    # None: the embedded default model in assets/model/
    case = p.analyse(image)             # CaseAnalysis(segmentation, report (with heatmaps), timings)
    cases = p.analyse_batch([img1, img2])
"""
from __future__ import annotations

import time

import numpy as np

from model.imageio import as_gray_unit
from model.types import CaseAnalysis, Segmentation  # noqa: F401  (CaseAnalysis: what analyse returns)


def acquisition_view(tags: dict | None) -> dict:
    """What the checks need from the acquisition tags: the view (`PA`, `AP`, or None when unknown) and whether the
    pixel spacing is known."""
    tags = tags or {}
    view = str(tags.get("view_position") or "").strip().upper() or None
    return {"view": view if view in ("PA", "AP") else None, "pixel_spacing_known": bool(tags.get("pixel_spacing"))}


class Pipeline:
    def __init__(self, model_dir: str | None = None, seg_backend: str = "unet", method: str | None = None,
                 generator=None):
        from model.grounding import DEFAULT_METHOD, METHODS

        method = method or DEFAULT_METHOD
        if method not in METHODS:
            raise ValueError(f"unknown grounding method '{method}'; choose one of {', '.join(METHODS)}")
        self.model_dir, self.seg_backend, self.method = model_dir, seg_backend, method
        self._generator = generator
        self._gate = False  # not loaded yet (None: the model has no domain gate)
        self.use_gate = True  # benchmarks switch it off to measure the other rules alone

    @property
    def generator(self):
        if self._generator is None:  # loaded on first use: constructing a Pipeline stays cheap
            from model.s2d.generate import load_generator

            self._generator = load_generator(self.model_dir)
        return self._generator

    @property
    def gate(self):
        if self._gate is False:
            from model.s2d.domain import DomainGate

            self._gate = DomainGate.load(self.generator.model_dir)
        return self._gate

    def domain(self, images: list[np.ndarray]) -> list[dict | None]:
        """The model's domain gate on each film ({"score", "limit", "inside"}), None where the model has none."""
        if not self.use_gate or self.gate is None:
            return [None] * len(images)
        from model.s2d.domain import film_features

        return [v.to_dict() for v in self.gate.judge(film_features(self.generator, images))]

    def segment(self, image: np.ndarray) -> Segmentation:
        from model.segmentation import segment

        return segment(image, backend=self.seg_backend)

    def analyse(self, image, method: str | None = None, segmentation: Segmentation | None = None,
                acquisition: dict | None = None) -> CaseAnalysis:
        """`acquisition`: the film's non-identifying DICOM tags (model.imageio.acquisition_tags), when known: the
        checks read the view from them (a CTR over 0.5 means cardiomegaly only on a PA film)."""
        return self.analyse_batch([image], method=method,
                                  segmentations=None if segmentation is None else [segmentation],
                                  acquisitions=None if acquisition is None else [acquisition])[0]

    def analyse_batch(self, images, method: str | None = None, segmentations: list[Segmentation] | None = None,
                      acquisitions: list[dict | None] | None = None) -> list[CaseAnalysis]:
        """Segment each image (unless its segmentation is given), generate all reports in one batch, then ground
        each report. Every image goes through the one normaliser (model.imageio.as_gray_unit) first."""
        from model.grounding import ground

        images = [as_gray_unit(im) for im in images]
        if not images:
            return []
        if segmentations is not None and len(segmentations) != len(images):
            raise ValueError(f"{len(images)} images but {len(segmentations)} segmentations")
        t0 = time.perf_counter()
        segs = list(segmentations) if segmentations is not None else [self.segment(im) for im in images]
        for seg, acq in zip(segs, acquisitions or [None] * len(segs)):
            seg.measurements["acquisition"] = acquisition_view(acq)
        t_seg = time.perf_counter() - t0
        t1 = time.perf_counter()
        gens = self.generator.generate_batch(images, masks=[s.masks for s in segs])
        if len(gens) != len(images):
            raise RuntimeError(f"generator returned {len(gens)} reports for {len(images)} images")
        t_gen = time.perf_counter() - t1
        t3 = time.perf_counter()
        domains = self.domain(images)
        t_dom = time.perf_counter() - t3
        out = []
        for im, seg, gen, dom in zip(images, segs, gens, domains):
            t2 = time.perf_counter()
            report = ground(self.generator, im, seg, gen, method=method or self.method, domain=dom)
            t_ground = time.perf_counter() - t2
            n = len(images)
            timings = {"segment_s": t_seg / n, "generate_s": t_gen / n, "domain_s": t_dom / n, "ground_s": t_ground}
            timings["total_s"] = sum(timings.values())
            report.timings.update(timings)
            out.append(CaseAnalysis(segmentation=seg, report=report, timings=timings))
        return out
