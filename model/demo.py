"""Demo cases shipped in assets/demo/ for the app: phantom studies with ground truth, and a few real radiographs
(3 IU X-Ray frontals with their reports, 2 NIH ChestX-ray14 images with their labels).

`load_demo_cases()` returns plain `DemoCase` records (no torch). `python -m model.demo --build --shared DIR`
regenerates assets/demo/ from the phantom generator and DIR (../shared/data).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from model import ASSETS_DIR

DEMO_DIR = os.path.join(ASSETS_DIR, "demo")
CASES_JSON = os.path.join(DEMO_DIR, "cases.json")
LICENCES = ("phantom", "iu-xray", "nih-cxr14")  # keys of the rows in assets/LICENSES.md


@dataclass
class DemoCase:
    id: str
    source: str  # "phantom", "IU X-Ray (Open-i)", "NIH ChestX-ray14"
    kind: str  # "phantom" or "real"
    image_path: str  # absolute path of the PNG
    licence: str  # one of LICENCES
    reference_report: str | None = None  # the case's own report, when it has one
    labels: dict | None = None  # CheXpert observation -> 1 for labelled real images (NIH), else None
    findings: dict | None = None  # phantom findings record (docs/phantom.md)
    masks_path: str | None = None  # phantom masks .npz (anatomy + finding/<id>)
    prior_report: str | None = None
    key_phrases: list[str] = field(default_factory=list)
    notes: str = ""

    def load_image(self) -> np.ndarray:
        """The radiograph as uint8 grayscale H×W."""
        import cv2
        img = cv2.imread(self.image_path, cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise FileNotFoundError(f"demo image missing or unreadable: {self.image_path}")
        return img

    def load_masks(self) -> tuple[dict, dict]:
        """(anatomy, findings) masks of a phantom case; real cases have none."""
        if self.masks_path is None:
            raise ValueError(f"demo case {self.id} is a real radiograph and has no ground-truth masks")
        from model.phantom.store import load_masks
        return load_masks(self.masks_path)


def load_demo_cases(cases_json: str = CASES_JSON) -> list[DemoCase]:
    if not os.path.isfile(cases_json):
        raise FileNotFoundError(f"demo case list not found: {cases_json} (build it: python -m model.demo --build)")
    with open(cases_json, encoding="utf-8") as fh:
        entries = json.load(fh)
    root = os.path.dirname(os.path.dirname(os.path.abspath(cases_json)))  # paths are relative to assets/
    cases = []
    for e in entries:
        if e.get("licence") not in LICENCES:
            raise ValueError(f"demo case {e.get('id')!r}: licence must be one of {LICENCES}, got {e.get('licence')!r}")
        cases.append(DemoCase(
            id=e["id"], source=e["source"], kind=e["kind"], image_path=os.path.join(root, e["image"]),
            licence=e["licence"], reference_report=e.get("reference_report"), labels=e.get("labels"),
            findings=e.get("findings"), masks_path=os.path.join(root, e["masks"]) if e.get("masks") else None,
            prior_report=e.get("prior_report"), key_phrases=list(e.get("key_phrases", [])), notes=e.get("notes", "")))
    return cases


# The phantom demo plans: diverse pathology, clearly visible (low subtlety, mild noise).
PHANTOM_PLANS = {
    "phantom_effusion_cardiomegaly": (101, [{"type": "Pleural Effusion", "side": "left", "size": "large"},
                                            {"type": "Cardiomegaly", "size": "moderate"}]),
    "phantom_pneumothorax_line": (102, [{"type": "Pneumothorax", "side": "right", "size": "large"},
                                        {"type": "Support Devices", "subtype": "central venous catheter"}]),
    "phantom_consolidation": (103, [{"type": "Consolidation", "location": "lung lower lobe right", "size": "dense"},
                                    {"type": "Pleural Effusion", "side": "right", "size": "small"}]),
    "phantom_mass_atelectasis": (104, [{"type": "Lung Lesion", "location": "left upper zone lung", "size": "mass"},
                                       {"type": "Atelectasis", "side": "bilateral", "size": "plate-like"}]),
    "phantom_edema_pacemaker": (105, [{"type": "Edema", "size": "moderate"}, {"type": "Cardiomegaly", "size": "mild"},
                                      {"type": "Support Devices", "subtype": "pacemaker"}]),
    "phantom_nodule_opacity_tube": (106, [{"type": "Lung Lesion", "location": "right mid zone lung", "size": "nodule"},
                                          {"type": "Lung Opacity", "location": "left mid zone lung", "size": "moderate"},
                                          {"type": "Support Devices", "subtype": "endotracheal tube"}]),
    "phantom_normal": (107, []),
}
IU_FRONTALS = ("CXR1900_IM-0584-1001.png", "CXR7_IM-2263-1001.png", "CXR3_IM-1384-1001.png")
NIH_TO_CHEXPERT = {"Cardiomegaly": "Cardiomegaly", "Effusion": "Pleural Effusion", "Pneumothorax": "Pneumothorax",
                   "Consolidation": "Consolidation", "Atelectasis": "Atelectasis", "Edema": "Edema",
                   "Nodule": "Lung Lesion", "Mass": "Lung Lesion", "Pneumonia": "Pneumonia", "No Finding": "No Finding"}


def build_demo_assets(shared_data: str, out_dir: str = DEMO_DIR) -> list[dict]:
    """Write the demo images, masks and cases.json (atomically); real images are copied verbatim."""
    from model.phantom import generate_case
    from model.atomic import atomic_write_bytes, atomic_write_json
    from model.phantom.store import write_case

    entries = []
    rel_dir = os.path.relpath(out_dir, os.path.dirname(out_dir))  # "demo"
    for cid, (seed, plan) in PHANTOM_PLANS.items():
        case = generate_case(seed, findings=plan, case_id=cid, subtlety=0.1, noise=0.3)
        e = write_case(case, out_dir)
        entries.append({"id": cid, "source": "phantom", "kind": "phantom", "image": f"{rel_dir}/{e['image_path'][0]}",
                        "masks": f"{rel_dir}/{e['masks']}", "licence": "phantom", "reference_report": case.report,
                        "labels": None, "findings": case.findings, "prior_report": case.prior_report,
                        "key_phrases": case.key_phrases,
                        "notes": "Synthetic phantom generated by GroundCXR (not a patient)."})

    iu_dir = os.path.join(shared_data, "iu-xray-images")
    with open(os.path.join(iu_dir, "reports.json"), encoding="utf-8") as fh:
        iu = {os.path.basename(img["path"]): r for r in json.load(fh) for img in r["images"]}
    for name in IU_FRONTALS:
        r = iu[name]
        parts = [f"FINDINGS: {r['findings']}" if r["findings"].strip() else "",
                 f"IMPRESSION: {r['impression']}" if r["impression"].strip() else ""]
        with open(os.path.join(iu_dir, name), "rb") as fh:
            atomic_write_bytes(os.path.join(out_dir, "real", name), fh.read())
        entries.append({"id": f"iu_CXR{r['uid']}", "source": "IU X-Ray (Open-i)", "kind": "real",
                        "image": f"{rel_dir}/real/{name}", "licence": "iu-xray",
                        "reference_report": " ".join(p for p in parts if p), "labels": None,
                        "notes": f"Indication: {r['indication']}"})

    nih_dir = os.path.join(shared_data, "nih-cxr14")
    with open(os.path.join(nih_dir, "labels.csv"), encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            name = row["Image Index"]
            raw = row["Finding Labels"].split("|")
            with open(os.path.join(nih_dir, name), "rb") as src:
                atomic_write_bytes(os.path.join(out_dir, "real", name), src.read())
            entries.append({"id": f"nih_{name[:-4]}", "source": "NIH ChestX-ray14", "kind": "real",
                            "image": f"{rel_dir}/real/{name}", "licence": "nih-cxr14", "reference_report": None,
                            "labels": {NIH_TO_CHEXPERT.get(x, x): 1 for x in raw},
                            "notes": f"NIH labels: {row['Finding Labels']}; {row['View Position']}, age "
                                     f"{row['Patient Age']}, {row['Patient Gender']}"})
    atomic_write_json(os.path.join(out_dir, "cases.json"), entries)
    return entries


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.demo", description=__doc__.splitlines()[0])
    p.add_argument("--build", action="store_true", help="regenerate assets/demo from the generator and --shared")
    p.add_argument("--shared", default=os.path.join(os.path.dirname(os.path.dirname(ASSETS_DIR)), "shared", "data"))
    args = p.parse_args(argv)
    if args.build:
        if not os.path.isdir(args.shared):
            p.error(f"shared data directory not found: {args.shared}")
        build_demo_assets(args.shared)
    for c in load_demo_cases():
        print(f"{c.id:32s} {c.kind:8s} {c.licence:10s} {os.path.relpath(c.image_path, ASSETS_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
