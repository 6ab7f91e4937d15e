"""Grounding engine: sentence -> ranked CXAS regions, heatmap and verdict (grounded / weak / ungrounded).

    ground(generator, image, segmentation, gen_output, method="ig-fast") -> ReportOutput
    ground_text(generator, image, segmentation, report_text, method="ig-fast") -> ReportOutput
    region_links(report_output) -> {region name: [sentence indices grounded in it]}

Methods: `ig-fast` (the default: integrated gradients on the patch embeddings with 2 Gauss-Legendre steps, all
sentences in one vectorised backward pass), `rollout` (attention rollout through the decoder and the memory
bottleneck: free on a generated report), `saliency` (gradient norm at the patch embeddings: one forward pass and
one backward pass per sentence), `ablation` (captum FeatureAblation over CXAS regions, causal, R + 1
teacher-forced passes; its links combine heatmap mass and the ablation drop), `ig` (captum
LayerIntegratedGradients on the patch embeddings, 16 steps; the slow reference).
See docs/grounding.md for the normalisation, the verdict rules and the calibration.
"""
from __future__ import annotations

import time

import numpy as np

from model.grounding import attribution
from model.grounding.regions import score_regions, to_display
from model.grounding.image_checks import image_checks
from model.grounding.verdict import Judgement, Thresholds, judge, unverified, with_specificity
from model.taxonomy import CLASS_INDEX, CORE_REGIONS
from model.types import RegionScore, ReportGenerator, ReportOutput, Segmentation, Sentence

METHODS = ("ig-fast", "rollout", "saliency", "ablation", "ig")
DEFAULT_METHOD = "ig-fast"


def understand(text: str) -> tuple[dict[str, int | None], list[str]]:
    """The labeler's observations (only those the sentence mentions: 1 / 0 / -1) and the CXAS anatomy it names."""
    from model.report.anatomy import sentence_anatomy
    from model.report.labeler import label_sentence

    labels = {k: v for k, v in label_sentence(text)[0].items() if v is not None}
    return labels, list(sentence_anatomy(text))


def _candidate_masks(segmentation: Segmentation, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """CXAS class masks (superclass unions are left out: their members are scored on their own)."""
    masks = {n: np.asarray(m, dtype=bool) for n, m in segmentation.masks.items() if n in CLASS_INDEX}
    bad = [n for n, m in masks.items() if m.shape != shape]
    if bad:
        raise ValueError(f"segmentation masks {bad[:3]} have shape {masks[bad[0]].shape} but the image is {shape}")
    if not masks:
        raise ValueError("the segmentation has no CXAS class masks to ground sentences in")
    return masks


def attribute(generator, image: np.ndarray, segmentation: Segmentation, gen_output, method: str = DEFAULT_METHOD,
              ablation_regions: list[str] | None = None, ig_steps: int = 16
              ) -> tuple[dict[int, np.ndarray], dict[int, dict[str, float]]]:
    """Per sentence: a pixel density and, for ablation, region -> [0, 1] ablation score (0.5 = no effect)."""
    if method not in METHODS:
        raise ValueError(f"unknown grounding method '{method}'; choose one of {', '.join(METHODS)}")
    shape = tuple(np.asarray(image).shape[:2])
    masks = _candidate_masks(segmentation, shape)
    spans = [tuple(s.token_span) for s in gen_output.sentences]
    if not spans:  # an empty report: nothing to attribute (and captum cannot ablate zero outputs)
        return {}, {}
    if method == "saliency":
        return attribution.saliency(generator, image, segmentation, gen_output.report, gen_output.key_layout,
                                    shape), {}
    if method == "ig-fast":
        return attribution.fast_integrated_gradients(generator, image, segmentation, gen_output.report,
                                                     gen_output.key_layout, shape), {}
    if method == "ig":
        dens = attribution.integrated_gradients(generator, image, segmentation, gen_output.report,
                                                gen_output.key_layout, n_steps=ig_steps, shape=shape)
        return dens, {}
    dens = attribution.rollout(gen_output.mem_attention, gen_output.cross_attention, gen_output.key_layout, spans,
                               masks, shape)
    if method == "rollout":
        return dens, {}
    regions = [r for r in (ablation_regions or CORE_REGIONS) if r in masks and masks[r].any()]

    def score_fn(key_mask):
        return generator.score_sentences(image, segmentation.masks, gen_output.report, key_mask=key_mask)

    drops = attribution.ablation(score_fn, gen_output.key_layout, masks, regions)  # [S, R]
    if drops.shape[0] != len(spans):
        raise ValueError(f"the scorer returned {drops.shape[0]} sentences but the report has {len(spans)}")
    abl = attribution.ablation_density(drops, regions, masks)
    out, scores = {}, {}
    for i in dens:
        # Both maps on a common scale (each sums to 1) so neither dominates by units.
        a, b = dens[i], abl[i]
        out[i] = (a / a.sum() if a.sum() > 0 else a) + (b / b.sum() if b.sum() > 0 else b)
        scores[i] = attribution.ablation_scores(drops[i], regions)
    return out, scores


def ground(generator: ReportGenerator, image: np.ndarray, segmentation: Segmentation, gen_output, method: str = DEFAULT_METHOD,
           thresholds: Thresholds | None = None, **kwargs) -> ReportOutput:
    """Fill each sentence of `gen_output` with ranked regions, verdict, reasons, labels and anatomy."""
    return ground_detailed(generator, image, segmentation, gen_output, method, thresholds, **kwargs)[0]


def ground_detailed(generator: ReportGenerator, image: np.ndarray, segmentation: Segmentation, gen_output,
                    method: str = DEFAULT_METHOD, thresholds: Thresholds | None = None, bank=None,
                    domain: dict | None = None, **kwargs
                    ) -> tuple[ReportOutput, list[Judgement]]:
    """`ground` plus each sentence's Judgement (its continuous unsupported-score; used by calibration and the
    benchmark). `bank`: the reference films [(image, masks), ...] of the image-specificity term (default: the
    phantom bank of model/grounding/specificity.py). `domain`: the model's domain gate on this film
    (model/s2d/domain.py); outside it every sentence is `unverified`, whatever its attribution."""
    t0 = time.perf_counter()
    th = thresholds or Thresholds.load()
    shape = tuple(np.asarray(image).shape[:2])
    masks = _candidate_masks(segmentation, shape)
    dens, abl_scores = attribute(generator, image, segmentation, gen_output, method, **kwargs)
    t_attr = time.perf_counter() - t0
    # Image checks beside the segmenter's measurements: zone density and lateral lung lucency against the other side.
    measurements = {**segmentation.measurements, **image_checks(image, masks)}
    pmi = None
    if th.pmi_weight > 0 and gen_output.sentences:
        from model.grounding.specificity import sentence_pmi

        pmi = sentence_pmi(generator, image, segmentation.masks, gen_output.report, bank)
        if len(pmi) != len(gen_output.sentences):
            # an extra score must not cost the reviewer the whole grounding: verdicts go on without it
            import warnings

            warnings.warn(f"image specificity skipped: the scorer split the report into {len(pmi)} sentences, "
                          f"the output has {len(gen_output.sentences)}")
            pmi = None
    sentences, heatmaps, judgements = [], {}, []
    for i, s in enumerate(gen_output.sentences):
        regions = score_regions(dens[i], masks)
        if i in abl_scores:  # ablation: mean of the area-normalised mass score and the ablation score
            regions = sorted((RegionScore(r.name, 0.5 * r.score + 0.5 * abl_scores[i].get(r.name, 0.5))
                              for r in regions), key=lambda r: (-r.score, r.name))
        labels, anatomy = understand(s.text)
        j = judge(s.text, labels, anatomy, regions, masks, measurements, th)
        if pmi is not None:
            j = with_specificity(j, float(pmi[i]), th)
        if domain is not None and not domain.get("inside", True):
            j = unverified(j, domain)
        judgements.append(j)
        sentences.append(Sentence(index=i, text=s.text, token_span=tuple(s.token_span), regions=j.regions,
                                  verdict=j.verdict, reasons=j.reasons, labels=labels, anatomy=anatomy))
        heatmaps[i] = to_display(dens[i])
    base = gen_output.to_report_output() if hasattr(gen_output, "to_report_output") else None
    timings = dict(getattr(base, "timings", {}) or {})
    timings.update({"grounding_attribution_s": t_attr, "grounding_s": time.perf_counter() - t0})
    out = ReportOutput(report=gen_output.report, sentences=sentences,
                       model_version=getattr(base, "model_version", "") or "", timings=timings,
                       grounding_method=method, heatmaps=heatmaps, domain=domain)
    return out, judgements


def ground_text(generator: ReportGenerator, image: np.ndarray, segmentation: Segmentation, report_text: str,
                method: str = DEFAULT_METHOD, **kwargs) -> ReportOutput:
    """Ground any report text (a reviewer's edit, an inserted sentence) with one teacher-forced pass."""
    if not report_text or not report_text.strip():
        raise ValueError("report_text is empty: nothing to ground")

    forced = generator.teacher_force(np.asarray(image), segmentation.masks, report_text)
    return ground(generator, image, segmentation, forced, method, **kwargs)


def region_links(report: ReportOutput, verdicts=("grounded", "weak")) -> dict[str, list[int]]:
    """Each region -> the sentences (indices) linking to it, for sentences with one of `verdicts`."""
    links: dict[str, list[int]] = {}
    for s in report.sentences:
        if s.verdict in verdicts:
            for r in s.regions:
                links.setdefault(r.name, []).append(s.index)
    return links


def save_heatmaps(report: ReportOutput, out_dir: str, stem: str) -> dict[int, str]:
    """Write each sentence's heatmap as an 8-bit grey PNG `<stem>_s<index>.png` (atomically) -> index -> path."""
    import os

    from PIL import Image

    from model.atomic import atomic_path

    if not report.heatmaps:
        return {}
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for i, heat in sorted(report.heatmaps.items()):
        path = os.path.join(out_dir, f"{stem}_s{i}.png")
        with atomic_path(path, ".png") as tmp:
            Image.fromarray((np.clip(heat, 0, 1) * 255).astype(np.uint8)).save(tmp, format="PNG")
        paths[i] = path
    return paths
