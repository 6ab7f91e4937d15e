"""`generate_case`: one seeded phantom study (image, CXAS anatomy masks, finding masks, record, report, prior)."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import cv2
import numpy as np

from .anatomy import build_anatomy, render_normal, sample_geometry
from .findings import FINDING_TYPES, SIZES, draw, regions_of, sample_spec, sample_specs
from .report import write_report

SCHEMA = "groundcxr.phantom/1"
DEFAULT_KNOBS = {"subtlety": 0.3, "noise": 0.5, "abnormal_prob": 0.75, "max_findings": 3}
_RESOLVABLE = ("Pleural Effusion", "Pneumothorax", "Consolidation", "Lung Opacity", "Atelectasis", "Edema")


@dataclass
class PhantomCase:
    id: str
    image: np.ndarray  # uint8 H×W
    masks: dict[str, np.ndarray] = field(repr=False)  # CXAS name → bool H×W (anatomy)
    finding_masks: dict[str, np.ndarray] = field(repr=False)  # finding id ("f0") → bool H×W; stored as finding/<id>
    findings: dict = field(repr=False)  # the structured record (docs/phantom.md)
    report: str = ""
    prior_report: str = ""
    key_phrases: list[str] = field(default_factory=list)


def check_knobs(knobs: dict) -> dict:
    unknown = sorted(set(knobs) - set(DEFAULT_KNOBS))
    if unknown:
        raise TypeError(f"unknown phantom knobs {unknown}; known: {sorted(DEFAULT_KNOBS)}")
    k = {**DEFAULT_KNOBS, **knobs}
    for name in ("subtlety", "noise", "abnormal_prob"):
        if not 0.0 <= float(k[name]) <= 1.0:
            raise ValueError(f"knob {name} must be in [0, 1], got {k[name]}")
    if int(k["max_findings"]) < 0:
        raise ValueError(f"knob max_findings must be >= 0, got {k['max_findings']}")
    return k


def _prior_findings(current: list[dict], rng: np.random.Generator) -> list[dict]:
    """An earlier study of the same patient: findings unchanged, smaller/larger, absent (new now) or resolved since."""
    prior = []
    for f in current:
        keep = {k: v for k, v in f.items() if k in ("type", "side", "size", "location", "subtype", "diameter_mm",
                                                    "ctr", "measurements")}
        r = rng.random()
        sizes = SIZES.get(f["type"], ())
        if r < 0.45 or (r >= 0.75 and f["type"] in ("Support Devices", "Lung Lesion")):
            f["change"] = "unchanged"
            prior.append({**keep, "change": "unchanged"})
        elif r < 0.75:
            f["change"] = "new"
        else:  # the same finding at a different size or severity
            others = [s for s in sizes if s != f["size"]]
            old = others[int(rng.integers(len(others)))]
            f["change"] = "increased" if sizes.index(old) < sizes.index(f["size"]) else "decreased"
            p = sample_spec(rng, f["type"], side=f["side"], size=old, location=f.get("location"))
            prior.append({**p, "change": f["change"]})
    if rng.random() < 0.3:
        absent = [t for t in _RESOLVABLE if t not in {f["type"] for f in current}]
        gone = sample_spec(rng, absent[int(rng.integers(len(absent)))])
        if not any(p["type"] == "Pleural Effusion" and gone["type"] == "Pneumothorax" and p["side"] == gone["side"]
                   or p["type"] == "Pneumothorax" and gone["type"] == "Pleural Effusion" and p["side"] == gone["side"]
                   for p in prior):
            prior.append({**gone, "change": "resolved"})
    return prior


def _compose(layers: dict, rng: np.random.Generator, noise: float, size: int) -> np.ndarray:
    img = (layers["base"] + 0.10 * layers["vessels"] * layers["vessel_keep"] + layers["bones"] + layers["opacity"]
           + layers["extra"] + layers["devices"])
    img = cv2.GaussianBlur(img, (0, 0), 0.5 * size / 256)
    # exposure: window, level and film gamma vary between studies
    img = (img - rng.normal(0.0, 0.025)) * rng.uniform(0.9, 1.15)
    img = np.clip(img, 0, 1) ** rng.uniform(0.85, 1.2)
    # quantum noise (fine) and mottle (coarse), scaled by the noise knob
    sigma = 0.004 + noise * rng.uniform(0.01, 0.03)
    img = img + rng.normal(0, sigma, img.shape).astype(np.float32)
    mottle = cv2.GaussianBlur(rng.normal(0, 1, img.shape).astype(np.float32), (0, 0), 4 * size / 256)
    img = img + noise * 0.06 * mottle
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def generate_case(seed: int, size: int = 256, *, findings: list[dict] | None = None, case_id: str | None = None,
                  **knobs) -> PhantomCase:
    """One deterministic phantom study.

    seed: any int >= 0; the same (seed, size, findings, knobs) gives the same case bit for bit.
    findings: optional plan overriding the random draw, e.g. [{"type": "Pleural Effusion", "side": "left",
      "size": "large"}]; unspecified fields are sampled.
    knobs: subtlety (0 obvious .. 1 faint), noise (0 .. 1), abnormal_prob (chance of any finding),
      max_findings (1..N findings when abnormal).
    """
    if size < 64:
        raise ValueError(f"size must be >= 64 pixels, got {size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    k = check_knobs(knobs)
    rng_find, rng_geo, rng_draw, rng_text, rng_prior, rng_img = (np.random.default_rng([seed, i]) for i in range(6))

    if findings is None:
        specs = sample_specs(rng_find, k["abnormal_prob"], int(k["max_findings"]))
    else:
        specs = []
        for f in findings:
            if "type" not in f:
                raise ValueError(f"each planned finding needs a 'type' (one of {FINDING_TYPES}); got {f}")
            specs.append(sample_spec(rng_find, f["type"], **{k2: v for k2, v in f.items() if k2 != "type"}))
    cardio = next((s for s in specs if s["type"] == "Cardiomegaly"), None)
    ctr = cardio["ctr"] if cardio else float(rng_geo.uniform(0.40, 0.48))
    geometry = sample_geometry(rng_geo, ctr)
    anat = build_anatomy(geometry, size)
    layers = render_normal(anat, rng_draw, size)
    layers.update(opacity=np.zeros((size, size), np.float32), vessel_keep=np.ones((size, size), np.float32),
                  extra=np.zeros((size, size), np.float32), devices=np.zeros((size, size), np.float32))

    records, finding_masks = [], {}
    for i, spec in enumerate(specs):
        fid = f"f{i}"
        conspicuity = round(float(1.0 - k["subtlety"] * rng_draw.uniform(0.3, 1.0)), 3)
        mask, meas, regions = draw(spec, anat, layers, rng_draw, size, conspicuity)
        if not mask.any():
            raise RuntimeError(f"finding {fid} ({spec['type']}) has an empty mask; seed {seed}")
        finding_masks[fid] = mask
        records.append({"id": fid, **spec, "regions": regions or regions_of(mask, anat.masks),
                        "mask_key": f"finding/{fid}", "conspicuity": conspicuity,
                        "measurements": meas, "change": None})

    image = _compose(layers, rng_img, float(k["noise"]), size)
    prior = _prior_findings(records, rng_prior)
    report, key_phrases = write_report(records, rng_text)
    prior_report, _ = write_report(prior, rng_prior)
    cid = case_id or f"phantom_{seed}"
    record = {"schema": SCHEMA, "id": cid, "seed": int(seed), "size": int(size), "view": "PA",
              "knobs": {n: (float(v) if n != "max_findings" else int(v)) for n, v in k.items()},
              "measurements": dict(anat.measurements), "normal": not records,
              "findings": records, "prior": {"findings": copy.deepcopy(prior)}}
    return PhantomCase(id=cid, image=image, masks=anat.masks, finding_masks=finding_masks, findings=record,
                       report=report, prior_report=prior_report, key_phrases=key_phrases)
