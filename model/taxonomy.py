"""The CXAS (PAX-Ray++) taxonomy: 159 class names, the 18 superclass display groups, and display colours.

Names are the contract between segmentation, grounding, the labeler's anatomy and the viewer: every mask, region
link and anatomy mention uses exactly these strings. Source: the `cxas` package 0.0.20 (Seibold C. et al.,
github.com/ConstantinSeibold/ChestXRayAnatomySegmentation, CC BY-NC-SA 4.0); copies in `assets/cxas/`.
"""
from __future__ import annotations

import colorsys
import json
import os
from functools import lru_cache

from model import ASSETS_DIR

_CXAS_DIR = os.path.join(ASSETS_DIR, "cxas")


@lru_cache(maxsize=1)
def _labels() -> tuple[str, ...]:
    with open(os.path.join(_CXAS_DIR, "paxray_labels.json"), encoding="utf-8") as fh:
        label_dict = json.load(fh)["label_dict"]
    return tuple(label_dict[str(i)] for i in range(len(label_dict)))


@lru_cache(maxsize=1)
def _superclasses() -> dict[str, tuple[str, ...]]:
    with open(os.path.join(_CXAS_DIR, "superclasses.json"), encoding="utf-8") as fh:
        raw = json.load(fh)
    return {group: tuple(members) for group, members in raw.items()}


CLASS_NAMES: tuple[str, ...] = _labels()
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}
SUPERCLASSES: dict[str, tuple[str, ...]] = _superclasses()
SUPERCLASS_NAMES: tuple[str, ...] = tuple(SUPERCLASSES)

# Groups for display toggles: every class falls in exactly one (its first superclass, else "other").
# Superclass membership itself may overlap ("heart" is in both "heart region" and "vessels").
_DISPLAY_ORDER = ("lung halves", "lung zones", "lung lobes", "heart region", "mediastinum", "trachea", "diaphragm",
                  "vessels", "clavicle set", "scapula set", "ribs", "ribs super", "thoracic spine",
                  "cervical spine", "lumbar spine", "all vertebrae", "breast tissue", "abdomen")


def _display_group() -> dict[str, str]:
    group: dict[str, str] = {}
    for sc in _DISPLAY_ORDER:
        for name in SUPERCLASSES.get(sc, ()):
            group.setdefault(name, sc)
    for name in CLASS_NAMES:
        group.setdefault(name, "other")
    return group


DISPLAY_GROUP: dict[str, str] = _display_group()


def is_valid_name(name: str) -> bool:
    """True for a CXAS class name or a CXAS superclass name."""
    return name in CLASS_INDEX or name in SUPERCLASSES


def validate_names(names) -> None:
    bad = sorted(n for n in names if not is_valid_name(n))
    if bad:
        raise ValueError(f"not CXAS class or superclass names: {bad}")


def superclasses_of(name: str) -> list[str]:
    return [sc for sc, members in SUPERCLASSES.items() if name in members]


@lru_cache(maxsize=None)
def color(name: str) -> tuple[int, int, int]:
    """A stable RGB colour per class: hue by display group, shade by position within it, so a legend reads by group."""
    group = DISPLAY_GROUP.get(name, name if name in SUPERCLASSES else "other")
    groups = list(_DISPLAY_ORDER) + ["other"]
    gi = groups.index(group) if group in groups else len(groups) - 1
    members = [n for n in CLASS_NAMES if DISPLAY_GROUP[n] == group] or [name]
    mi = members.index(name) if name in members else 0
    hue = (gi * 0.61803398875) % 1.0
    light = 0.45 + 0.25 * ((mi * 0.37) % 1.0)
    r, g, b = colorsys.hls_to_rgb(hue, light, 0.85)
    return int(r * 255), int(g * 255), int(b * 255)


# The structures the lung-field derivations and the phantom world produce; a useful default for overlays.
CORE_REGIONS: tuple[str, ...] = (
    "right lung", "left lung", "right upper zone lung", "right mid zone lung", "right lung base",
    "right apical zone lung", "left upper zone lung", "left mid zone lung", "left lung base", "left apical zone lung",
    "lung upper lobe right", "lung middle lobe right", "lung lower lobe right", "lung upper lobe left",
    "lung lower lobe left", "heart", "cardiomediastinum", "upper mediastinum", "trachea", "tracheal bifurcation",
    "aortic arch", "right hemidiaphragm", "left hemidiaphragm", "clavicle left", "clavicle right", "thoracic spine",
)
