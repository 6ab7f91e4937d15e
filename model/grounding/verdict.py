"""Verdict rules: grounded / weak / ungrounded, with reasons, from region support, anatomy and measurements.

Inputs are plain: a sentence's CheXpert-style labels (observation -> 1 / 0 / -1 / None), the CXAS anatomy it names,
its ranked region scores (model.grounding.regions), the region masks and the image measurements. Nothing here
touches the model, so every rule is unit-testable with synthetic heatmaps and measurements.

Rules (thresholds in assets/grounding/thresholds.json, calibrated on the phantom validation split):
- Positive / uncertain finding:
  * ungrounded: the image measurement contradicts the finding (ASaRG-style verification: cardiomegaly with a
    cardiothoracic ratio under the threshold, an effusion with a sharp costophrenic angle on its side, a
    pneumothorax whose lateral lung band is no darker than the other side's, an opacity / consolidation / nodule /
    atelectasis whose lung zone is no denser than its mirror zone), or no region supports it (best relevant score
    under `support_min`) and no image check confirms it;
  * weak: supported, but the supporting regions do not overlap the anatomy the sentence names, or support is
    only moderate (under `support_good`), or no region supports it but an image check confirms the finding;
  * grounded: otherwise.
- Negative sentence ("no pneumothorax"): judged against the whole region it denies (both lungs for a
  pneumothorax, both bases for an effusion, the heart for cardiomegaly ...): ungrounded when a measurement there
  shows the denied finding; weak when the sentence's attribution does not cover the denied region; else grounded.
- Sentences with no finding at all (technique, "heart size is normal") are judged as negatives of what they
  describe when the labeler marks an observation 0, and otherwise as plain descriptions (grounded when supported).

`Judgement.score` is a continuous "how likely is this sentence unsupported" in [0, 1] used for ranking (AUROC).
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from model import ASSETS_DIR
from model.types import RegionScore

THRESHOLDS_PATH = os.path.join(ASSETS_DIR, "grounding", "thresholds.json")
RELIABLE_J = 0.6
STRONG = 0.95  # an unreliable check still calls a sentence unsupported when its evidence is this strong

LUNGS = ("right lung", "left lung")
SIDES = ("right", "left")


@dataclass
class Thresholds:
    support_min: float = 0.55  # best relevant region score below this: no region supports the sentence
    support_good: float = 0.62  # at or above: well supported
    support_weight: float = 0.3  # share of attribution support in a checked finding's score (rest: image check)
    ctr_max_normal: float = 0.50  # cardiothoracic ratio at or below this: heart size normal
    cp_sharp_min: float = 0.5  # costophrenic sharpness at or above this: sharp (no effusion on that side)
    lucency_min: float = 0.15  # lateral_lucency (below) at or above this: air at the lung's edge (pneumothorax)
    opacity_min: float = 0.5  # zone opacity (zone_opacity below) at or above this: the zone is opacified
    measurement_scale: dict[str, float] = field(default_factory=lambda: {
        "ctr": 0.03, "cp": 0.1, "lucency": 0.05, "opacity": 0.15})  # logistic softness of each measurement check
    # A check whose calibration separates poorly (Youden J < RELIABLE_J) makes a sentence weak, and ungrounded
    # only when its evidence is STRONG.
    reliable: dict[str, bool] = field(default_factory=lambda: {
        "ctr": True, "cp": True, "lucency": True, "opacity": False})
    # image specificity (model/grounding/specificity.py): the share of the report model's own PMI in every
    # sentence's score, and the PMI scale of its logistic; 0 = off (uncalibrated: the model may not read the image)
    pmi_weight: float = 0.0
    pmi_scale: float = 1.0
    # support must lie where the finding lives (SUPPORT_REGIONS, DEVICE_REGIONS); off only to measure what it buys
    anatomy_rule: bool = True
    # checks whose threshold has been validated on real films with real labels; none yet (docs/grounding.md): the
    # covid-lungs films carry no finding labels and the sanity films are not for tuning. An unvalidated check says so
    # in its reason; it can confirm or contradict, never make a sentence grounded on its own (support must).
    validated_on_real: dict[str, bool] = field(default_factory=lambda: {
        "ctr": False, "cp": False, "lucency": False, "opacity": False})
    source: str = "defaults (not calibrated)"

    @classmethod
    def load(cls, path: str | None = None) -> "Thresholds":
        path = path or THRESHOLDS_PATH
        if not os.path.exists(path):
            return cls()
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known - {"command", "calibration"})
        if unknown:
            raise ValueError(f"{path}: unknown threshold fields {unknown}; known: {sorted(known)}")
        return cls(**{k: v for k, v in raw.items() if k in known})

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Judgement:
    verdict: str
    reasons: list[str]
    score: float  # in [0, 1]: higher = more likely unsupported / hallucinated
    regions: list[RegionScore]  # the links to show (for negatives: the denied regions)
    support: float | None = None  # best score among regions matching the named anatomy (positive findings)


# What each CheXpert observation can be checked against. `regions(side)` names where it lives (for negatives:
# the whole region denied); `check` names the measurement test, if any.
def _sided(template: str, side: str | None) -> tuple[str, ...]:
    return tuple(template.format(s) for s in ((side,) if side else SIDES))


FINDING_REGIONS = {
    "Cardiomegaly": lambda side: ("heart",),
    "Enlarged Cardiomediastinum": lambda side: ("cardiomediastinum", "upper mediastinum"),
    "Pleural Effusion": lambda side: _sided("{} lung base", side),
    "Pneumothorax": lambda side: _sided("{} lung", side),
    "Consolidation": lambda side: _sided("{} lung", side),
    "Lung Opacity": lambda side: _sided("{} lung", side),
    "Pneumonia": lambda side: _sided("{} lung", side),
    "Atelectasis": lambda side: _sided("{} lung", side),
    "Lung Lesion": lambda side: _sided("{} lung", side),
    "Edema": lambda side: LUNGS,
    "Pleural Other": lambda side: _sided("{} lung", side),
}
# Where a positive finding's support must lie (the anatomy rule): as FINDING_REGIONS, but a pneumothorax's air
# collects at the apex and along the lateral wall of an upright film, not at the base.
SUPPORT_REGIONS = {**FINDING_REGIONS, "Pneumothorax": lambda side: _sided("{} apical zone lung", side)
                   + _sided("{} upper zone lung", side) + _sided("{} mid zone lung", side)}
# Where a tube or line runs on a frontal film: support elsewhere (a hemidiaphragm, a lung base) is not support.
DEVICE_REGIONS = ("trachea", "tracheal bifurcation", "upper mediastinum", "cardiomediastinum")
CHECKS = {"Cardiomegaly": "ctr", "Pleural Effusion": "cp", "Pneumothorax": "lucency", "Consolidation": "opacity",
          "Lung Opacity": "opacity", "Pneumonia": "opacity", "Lung Lesion": "opacity", "Atelectasis": "opacity"}


def side_of(text: str, anatomy: list[str]) -> str | None:
    """The patient side a sentence is about: 'left' / 'right' / None for both, bilateral or unsaid."""
    words = text.lower().replace(",", " ").replace(".", " ").split()
    said = {s for s in SIDES if s in words}
    said |= {s for s in SIDES for a in anatomy if a.startswith(s + " ") or a.endswith(" " + s)}
    if "bilateral" in words or "bibasilar" in words or len(said) != 1:
        return None
    return said.pop()


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, x))))


def measurement_view(measurements: dict) -> dict:
    """The checks' inputs: cardiothoracic_ratio (float) and costophrenic_sharpness ({"left", "right"}: higher =
    sharper) from the segmenter's measurements (model.segmentation.measure: `costophrenic[side]["sharpness"]`),
    plus the image checks of `image_checks` (zone_opacity, lateral_lucency) when present. Missing entries stay
    absent. The segmenter's `apex_texture` is not used: on phantoms it does not separate pneumothorax (see
    docs/grounding.md); lateral_lucency does."""
    m = dict(measurements or {})
    if "costophrenic_sharpness" not in m and isinstance(m.get("costophrenic"), dict):
        m["costophrenic_sharpness"] = {s: v.get("sharpness") for s, v in m["costophrenic"].items()
                                       if isinstance(v, dict)}
    return m


def finding_evidence(observation: str, side: str | None, measurements: dict, th: Thresholds
                     ) -> tuple[float, str] | None:
    """Probability-like evidence in [0, 1] that the image shows `observation` on `side` (None: either side), from
    the measurements, with a human-readable description; None when no measurement applies or it is missing."""
    measurements = measurement_view(measurements)
    check = CHECKS.get(observation)
    if check == "ctr":
        ctr = measurements.get("cardiothoracic_ratio")
        if ctr is None:
            return None
        p = _logistic((ctr - th.ctr_max_normal) / th.measurement_scale["ctr"])
        view = (measurements.get("acquisition") or {}).get("view")
        if view == "AP" and p > 0.5:
            # an AP film magnifies the heart: a large ratio there neither shows nor rules out cardiomegaly
            return 0.5, (f"cardiothoracic ratio {ctr:.2f} on an AP film, where the heart looks larger: not evidence "
                         f"of cardiomegaly by itself (normal <= {th.ctr_max_normal:.2f} on PA{_provenance('ctr', th)})")
        seen = "on a PA film" if view == "PA" else "view unknown, read as a PA film"
        return p, (f"cardiothoracic ratio {ctr:.2f}, {seen} (normal <= {th.ctr_max_normal:.2f}"
                   f"{_provenance('ctr', th)})")
    if check in ("cp", "lucency"):
        # cp: below the limit = blunted angle = effusion; lucency: above the limit = air at the edge = pneumothorax.
        key, limit, what, sign = (("costophrenic_sharpness", th.cp_sharp_min, "costophrenic angle sharpness", -1)
                                  if check == "cp" else ("lateral_lucency", th.lucency_min, "lateral lung lucency", 1))
        per_side = measurements.get(key) or {}
        best = None
        for s in ((side,) if side else SIDES):
            value = per_side.get(s)
            if value is None:
                continue
            p = _logistic(sign * (value - limit) / th.measurement_scale[check])
            if best is None or p > best[0]:
                rel = ">=" if sign < 0 else "<"
                best = (p, f"{s} {what} {value:.2f} (normal {rel} {limit:.2f}{_provenance(check, th)})")
        return best
    if check == "opacity":
        found = opacity_value(measurements, side, th)
        if found is None:
            return None
        value, zone = found
        p = _logistic((value - th.opacity_min) / th.measurement_scale["opacity"])
        return p, (f"{zone} opacity {value:+.2f} vs the other side (opacified >= {th.opacity_min:.2f}"
                   f"{_provenance('opacity', th)})")
    return None


def _provenance(check: str, th: Thresholds) -> str:
    """Where a check's threshold comes from, in its reason."""
    return "" if th.validated_on_real.get(check) else "; threshold from phantoms, not validated on real films"


def opacity_value(measurements: dict, side: str | None, th: Thresholds) -> tuple[float, str] | None:
    """The densest lung zone on `side` (either when None) as (zone_opacity, zone name). A blunted costophrenic
    angle means fluid: it explains a dense lung base, which then says nothing about consolidation or collapse."""
    zones = measurements.get("zone_opacity") or {}
    sharp = measurement_view(measurements).get("costophrenic_sharpness") or {}
    fluid = {s for s, v in sharp.items() if v is not None and v < th.cp_sharp_min}
    cands = [(v, z) for z, v in zones.items() if (side is None or z.startswith(side + " "))
             and not (z.endswith("lung base") and z.split(" ")[0] in fluid)]
    return max(cands) if cands else None


def _inside(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Fraction of mask a lying inside mask b (0 when either is missing or a is empty)."""
    if a is None or b is None:
        return 0.0
    n = a.sum()
    return float(np.logical_and(a, b).sum() / n) if n else 0.0


def _relevant(regions: list[RegionScore], wanted: tuple[str, ...] | list[str], masks: dict[str, np.ndarray],
              min_inside: float = 2 / 3) -> list[RegionScore]:
    """Scored regions lying mostly inside one of `wanted` (for `left lung`: its zones, lobes and base; for
    `left lung base`: the base and the lower lobe's part there, not the whole lung). Two thirds rather than a half:
    CXAS's bilateral `diaphragm` lies just over half inside an enlarged `left hemidiaphragm` and must not pass
    for left-sided support."""
    return [r for r in regions if any(_inside(masks.get(r.name), masks.get(w)) >= min_inside for w in wanted)]


def judge(text: str, labels: dict[str, int | None], anatomy: list[str], regions: list[RegionScore],
          masks: dict[str, np.ndarray], measurements: dict, th: Thresholds, top_k: int = 3) -> Judgement:
    """Apply the module's rules to one sentence: a finding it affirms, a finding it denies, or a description. A
    distance the sentence gives ("4 cm above the carina") is never checked, and its reasons say so."""
    j = _judge(text, labels, anatomy, regions, masks, measurements, th, top_k)
    if DISTANCE.search(text):
        spacing = (measurements.get("acquisition") or {}).get("pixel_spacing_known")
        j.reasons.append("The distance it gives is not checked: this tool does not measure positions of tubes or "
                         "lines" + ("" if spacing else ", and the film carries no pixel spacing"))
    return j


DISTANCE = re.compile(r"\b\d+(?:\.\d+)?\s?(?:cm|mm)\b", re.IGNORECASE)


def _judge(text: str, labels: dict[str, int | None], anatomy: list[str], regions: list[RegionScore],
           masks: dict[str, np.ndarray], measurements: dict, th: Thresholds, top_k: int) -> Judgement:
    side = side_of(text, anatomy)
    positive = [o for o, v in labels.items() if v in (1, -1) and o in FINDING_REGIONS]
    negative = [o for o, v in labels.items() if v == 0 and o in FINDING_REGIONS]
    if positive:
        return _judge_affirmed(positive, side, anatomy, regions, masks, measurements, th, top_k)
    if negative:
        return _judge_denied(negative, side, regions, masks, measurements, th)
    # Plain description (technique, devices, normal anatomy): grounded when the attribution is not diffuse noise.
    top = regions[:top_k]
    best_any = top[0].score if top else 0.0
    if labels.get("Support Devices") in (1, -1) and th.anatomy_rule:  # a device only where devices run
        return _judge_device(regions, masks, th, top_k)
    what = "description"
    if best_any < th.support_min:
        return Judgement("weak", [f"{what}: no region clearly supports it.\nbest region score {best_any:.2f} "
                                  f"(needs {th.support_min:.2f})"], float(1 - best_any), top)
    return Judgement("grounded", [f"{what}: supported by the image in {top[0].name}.\nregion score {best_any:.2f}"],
                     float(1 - best_any), top)


def _where(anatomy: list[str], expected: list[str], masks: dict[str, np.ndarray]) -> list[str]:
    """The anatomy a finding's support must come from: what the sentence names, where that lies inside the anatomy
    the finding lives in (a "right lower lobe" consolidation), else where the finding lives (an effusion "at the
    left hemidiaphragm" still needs support from the left base)."""
    named = [a for a in anatomy if any(_inside(masks.get(a), masks.get(e)) >= 2 / 3 for e in expected)]
    return named or expected


def _judge_device(regions: list[RegionScore], masks: dict[str, np.ndarray], th: Thresholds, top_k: int) -> Judgement:
    relevant = _relevant(regions, DEVICE_REGIONS, masks)
    support = relevant[0].score if relevant else 0.0
    top = regions[:top_k]
    if support >= th.support_min:
        return Judgement("grounded", [f"support device: supported by the image in {relevant[0].name}.\n"
                                      f"region score {support:.2f}"], float(1 - support), relevant[:top_k], support)
    elsewhere = ", ".join(r.name for r in top) or "no region"
    return Judgement("weak", ["support device: its support is not where tubes and lines run (trachea, "
                              f"mediastinum).\nfound in {elsewhere}"], float(1 - support), top, support)


def _judge_affirmed(positive: list[str], side, anatomy: list[str], regions: list[RegionScore],
                    masks: dict[str, np.ndarray], measurements: dict, th: Thresholds, top_k: int) -> Judgement:
    """A sentence affirming findings: the measurements must not contradict it, and a region it names must carry
    the attribution."""
    top = regions[:top_k]
    contradiction = None
    for obs in positive:
        ev = finding_evidence(obs, side, measurements, th)
        if ev is not None and (contradiction is None or ev[0] < contradiction[0]):
            contradiction = (ev[0], obs, ev[1], th.reliable.get(CHECKS[obs], True))
    if th.anatomy_rule:
        expected = sorted({r for obs in positive for r in SUPPORT_REGIONS[obs](side)})
        where = _where(anatomy, expected, masks)
    else:
        where = list(anatomy) or sorted({r for obs in positive for r in FINDING_REGIONS[obs](side)})
    relevant = _relevant(regions, where, masks)
    support = relevant[0].score if relevant else 0.0
    best_any = top[0].score if top else 0.0
    m_against = None if contradiction is None else 1.0 - contradiction[0]
    support_deficit = float(np.clip((th.support_good - support) / max(th.support_good - 0.5, 1e-6), 0, 1))
    w = th.support_weight
    score = support_deficit if m_against is None else (1 - w) * m_against + w * support_deficit
    verdict, reasons = "grounded", []
    if m_against is not None and m_against > 0.5:
        trusted = contradiction[3] or m_against >= STRONG
        verdict = "ungrounded" if trusted else "weak"
        reasons.append(f"The image does not bear out {contradiction[1].lower()}"
                       + ("" if trusted else " (a weak check: not enough to call it unsupported)")
                       + f".\n{contradiction[2]}")
    if best_any < th.support_min:
        # The model's attention singles out no region; image evidence for the finding, if any, keeps it weak.
        confirmed = contradiction is not None and contradiction[0] > 0.5
        verdict = "weak" if confirmed and verdict != "ungrounded" else "ungrounded"
        reasons.append("Nothing in the image points to it: no region supports it"
                       + (", though the image measurement agrees" if confirmed else "")
                       + f".\nbest region score {best_any:.2f} (needs {th.support_min:.2f})"
                       + (f"; {contradiction[2]}" if confirmed else ""))
    elif support < th.support_min:
        verdict = "ungrounded" if verdict == "ungrounded" else "weak"
        reasons.append("Its evidence lies elsewhere: the supporting regions do not match the anatomy where it "
                       "would be.\nfound in " + ", ".join(r.name for r in top) + "; expected " + ", ".join(where))
    elif support < th.support_good and verdict == "grounded":
        verdict = "weak"
        reasons.append(f"Only moderate support, in {relevant[0].name}.\nregion score {support:.2f} (well "
                       f"supported from {th.support_good:.2f})")
    if verdict == "grounded":
        reasons.append(f"Supported by the image in {relevant[0].name}"
                       + (", and the measurement agrees" if contradiction else "")
                       + f".\nregion score {support:.2f}" + (f"; {contradiction[2]}" if contradiction else ""))
    links = relevant[:top_k] + [r for r in top if r not in relevant[:top_k]]
    return Judgement(verdict, reasons, float(score), links[:top_k + 1], support)


def _judge_denied(negative: list[str], side, regions: list[RegionScore], masks: dict[str, np.ndarray],
                  measurements: dict, th: Thresholds) -> Judgement:
    """A sentence denying findings: the measurements must not show them, and the attribution must cover the
    regions denied."""
    denied = sorted({r for obs in negative for r in FINDING_REGIONS[obs](side)})
    shown = [obs for obs in negative if finding_evidence(obs, side, measurements, th) is not None]
    worst = None
    for obs in shown:
        p, desc = finding_evidence(obs, side, measurements, th)
        if worst is None or p > worst[0]:
            worst = (p, obs, desc, th.reliable.get(CHECKS[obs], True))
    links = [r for r in regions if r.name in denied] or [RegionScore(n, 0.5) for n in denied if n in masks]
    covered = max((r.score for r in links), default=0.0)
    if worst is not None and worst[0] > 0.5:
        why = f"The image suggests {worst[1].lower()}, which it denies"
        if worst[3] or worst[0] >= STRONG:
            return Judgement("ungrounded", [f"{why}.\n{worst[2]}"], float(worst[0]), links)
        return Judgement("weak", [f"{why} (a weak check: not enough to call it unsupported).\n{worst[2]}"],
                         float(worst[0]), links)
    score = 0.0 if worst is None else float(worst[0])
    if regions and covered < th.support_min:
        return Judgement("weak", [f"Its evidence does not cover the region it denies.\n{', '.join(denied)}"],
                         max(score, 0.5 * (1 - covered)), links)
    why = f"Nothing in the image contradicts it.\nchecked: {', '.join(denied)}"
    if worst is not None:
        why += f"; {worst[2]}"
    return Judgement("grounded", [why], score, links)


def pmi_unsupported(pmi, scale: float):
    """Logistic of -PMI / scale (scalar or array): 0.5 when this film is no better than the reference films,
    -> 1 as the sentence gets less likely on it."""
    return 1.0 / (1.0 + np.exp(np.clip(np.asarray(pmi, dtype=np.float64) / max(scale, 1e-6), -50, 50)))


def with_specificity(j: Judgement, pmi: float, th: Thresholds) -> Judgement:
    """Fold the report model's image specificity (PMI, model/grounding/specificity.py) into a judgement: its
    unsupported-probability takes `pmi_weight` of the score; a `grounded` sentence the model finds less likely on
    this film than on typical ones (probability > 0.5) becomes `weak`, with the reason."""
    p = float(pmi_unsupported(pmi, th.pmi_scale))
    score = (1 - th.pmi_weight) * j.score + th.pmi_weight * p
    ratio = math.exp(min(abs(pmi), 50.0))
    how = "less" if pmi < 0 else "more"
    times = "over 100x" if ratio > 100 else f"{ratio:.1f}x"
    why = f"The report model finds it {times} {how} likely on this image than on typical films.\nPMI {pmi:+.2f}"
    verdict, reasons = j.verdict, list(j.reasons)
    if p > 0.5 and verdict == "grounded":
        verdict = "weak"
    reasons.append(why)
    return Judgement(verdict, reasons, float(score), j.regions, j.support)


def unverified(j: Judgement, domain: dict) -> Judgement:
    """A film outside the report model's domain: the sentence is not vouched for, whatever the attribution found
    (the model's attention on a film unlike its training films is not evidence). The score keeps its ranking."""
    why = ("Not checked: the model was not trained on films like this one, so this sentence is not a reading of "
           "the film\n" f"domain score {domain.get('score', float('nan')):.1f}, limit {domain.get('limit', float('nan')):.1f}")
    return Judgement("unverified", [why], j.score, j.regions, j.support)
