"""End-to-end analysis of one radiograph: segment -> generate -> ground. The app and `python -m model generate
--ground` use this; everything returned is a plain type from model/types.py.

    p = Pipeline(model_dir=None, seg_backend="atlas")   # None: the embedded default model in assets/model/
    case = p.analyse(image)             # CaseAnalysis(segmentation, report (with heatmaps), timings)
    cases = p.analyse_batch([img1, img2])
"""
from __future__ import annotations

import time

import numpy as np

from model.imageio import as_gray_unit
from model.types import CaseAnalysis, Segmentation  # noqa: F401  (CaseAnalysis: what analyse returns)


class Pipeline:
    def __init__(self, model_dir: str | None = None, seg_backend: str = "atlas", method: str | None = None,
                 generator=None):
        from model.grounding import DEFAULT_METHOD, METHODS

        method = method or DEFAULT_METHOD
        if method not in METHODS:
            raise ValueError(f"unknown grounding method '{method}'; choose one of {', '.join(METHODS)}")
        self.model_dir, self.seg_backend, self.method = model_dir, seg_backend, method
        self._generator = generator

    @property
    def generator(self):
        if self._generator is None:  # loaded on first use: constructing a Pipeline stays cheap
            from model.s2d.generate import load_generator

            self._generator = load_generator(self.model_dir)
        return self._generator

    def segment(self, image: np.ndarray) -> Segmentation:
        from model.segmentation import segment

        return segment(image, backend=self.seg_backend)

    def analyse(self, image, method: str | None = None, segmentation: Segmentation | None = None) -> CaseAnalysis:
        return self.analyse_batch([image], method=method,
                                  segmentations=None if segmentation is None else [segmentation])[0]

    def analyse_batch(self, images, method: str | None = None,
                      segmentations: list[Segmentation] | None = None) -> list[CaseAnalysis]:
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
        t_seg = time.perf_counter() - t0
        t1 = time.perf_counter()
        gens = self.generator.generate_batch(images, masks=[s.masks for s in segs])
        if len(gens) != len(images):
            raise RuntimeError(f"generator returned {len(gens)} reports for {len(images)} images")
        t_gen = time.perf_counter() - t1
        out = []
        for im, seg, gen in zip(images, segs, gens):
            t2 = time.perf_counter()
            report = ground(self.generator, im, seg, gen, method=method or self.method)
            t_ground = time.perf_counter() - t2
            n = len(images)
            timings = {"segment_s": t_seg / n, "generate_s": t_gen / n, "ground_s": t_ground}
            timings["total_s"] = sum(timings.values())
            report.timings.update(timings)
            out.append(CaseAnalysis(segmentation=seg, report=report, timings=timings))
        return out
