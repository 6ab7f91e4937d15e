"""Render a findings record as a radiology report ("FINDINGS: ... IMPRESSION: ...") with seeded, varied phrasing,
plus the gold key phrases (short canonical phrases such as "small left pleural effusion", "no pneumothorax").

Every positive sentence names the finding's side (or "bilateral"/"bibasilar") and, where it has one, its place
("right lower lobe", "left upper zone"), so sentences can be grounded in CXAS regions.
"""
from __future__ import annotations

import numpy as np

PARENCHYMAL = ("Consolidation", "Lung Opacity", "Lung Lesion", "Atelectasis", "Edema")


def place(name: str) -> str:
    """A CXAS zone/lobe name as radiologists write it: 'lung lower lobe right' -> 'right lower lobe'."""
    if name.startswith("lung ") and " lobe " in name:
        _, level, _, side = name.split()
        return f"{side} {level} lobe"
    if name.endswith(" apical zone lung"):
        return f"{name.split()[0]} apex"
    if name.endswith(" zone lung"):
        return name[: -len(" lung")]
    return name  # "right lung base"


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _positive(f: dict, pick) -> tuple[str, str, str]:
    """(findings sentence, impression phrase, key phrase) for one finding."""
    t, side, size = f["type"], f.get("side"), f.get("size")
    if t == "Cardiomegaly":
        adv = {"mild": "mildly", "moderate": "moderately", "marked": "markedly"}[size]
        ctr = f.get("measurements", {}).get("cardiothoracic_ratio", f.get("ctr"))
        s = pick([f"The heart is {adv} enlarged.", f"{_cap(size)} cardiomegaly, with a cardiothoracic ratio of "
                  f"approximately {ctr:.2f}.", f"The cardiac silhouette is {adv} enlarged."])
        return s, f"{_cap(size)} cardiomegaly.", f"{size} cardiomegaly"
    if t == "Pleural Effusion":
        s = pick({"small": [f"Small {side} pleural effusion with blunting of the {side} costophrenic angle.",
                            f"There is a small {side} pleural effusion blunting the {side} costophrenic angle.",
                            f"Blunting of the {side} costophrenic angle, consistent with a small {side} pleural "
                            f"effusion."],
                  "moderate": [f"Moderate {side} pleural effusion with a meniscus along the {side} lateral chest wall.",
                               f"There is a moderate {side} pleural effusion obscuring the {side} hemidiaphragm."],
                  "large": [f"Large {side} pleural effusion extending into the {side} mid zone and obscuring the "
                            f"{side} hemidiaphragm.", f"There is a large {side} pleural effusion with a meniscus "
                            f"reaching the {side} mid zone."]}[size])
        return s, f"{_cap(size)} {side} pleural effusion.", f"{size} {side} pleural effusion"
    if t == "Pneumothorax":
        s = pick([f"There is a {size} {side} apical pneumothorax with a visible pleural line.",
                  f"{_cap(size)} {side} pneumothorax; no lung markings are seen beyond the pleural line at the "
                  f"{side} apex.", f"A {size} {side} pneumothorax is present at the {side} apex.",
                  f"A visceral pleural line is seen at the {side} apex, in keeping with a {size} {side} "
                  f"pneumothorax."])
        return s, f"{_cap(size)} {side} pneumothorax.", f"{size} {side} pneumothorax"
    if t == "Consolidation":
        where = place(f["location"])
        s = pick([f"{_cap(size)} consolidation in the {where}.", f"There is {size} airspace consolidation in the "
                  f"{where}" + (", with air bronchograms." if size == "dense" else "."),
                  f"Focal {size} consolidation of the {where}.",
                  f"{_cap(size)} airspace opacity in the {where} compatible with consolidation."])
        return s, f"{_cap(where)} consolidation.", f"{where} consolidation"
    if t == "Lung Opacity":
        where = place(f["location"])
        adj = {"mild": "faint", "moderate": "hazy"}[size]
        s = pick([f"{_cap(adj)} opacity in the {where}.", f"There is an ill-defined {adj} opacity projecting over "
                  f"the {where}."])
        return s, f"{_cap(where)} opacity.", f"{where} opacity"
    if t == "Lung Lesion":
        where, d = place(f["location"]), f["diameter_mm"]
        if size == "nodule":
            s = pick([f"A {d} mm nodule projects over the {where}.", f"There is a {d} mm pulmonary nodule in the "
                      f"{where}."])
        else:
            s = pick([f"A {d / 10:.1f} cm mass in the {where}.", f"There is a {d / 10:.1f} cm rounded mass "
                      f"projecting over the {where}."])
        return s, f"{_cap(where)} {size}.", f"{where} {size}"
    if t == "Atelectasis":
        if side == "bilateral":
            s = pick([f"Bilateral {size} atelectasis at both lung bases.", f"Bibasilar {size} atelectasis."])
            return s, "Bibasilar atelectasis.", "bibasilar atelectasis"
        s = pick([f"{_cap(size)} atelectasis at the {side} lung base.", f"There is {size} atelectasis in the "
                  f"{side} lung base."])
        return s, f"{_cap(side)} basilar atelectasis.", f"{side} basilar atelectasis"
    if t == "Edema":
        s = pick([f"{_cap(size)} pulmonary edema with bilateral perihilar opacities.",
                  f"Bilateral perihilar haziness consistent with {size} pulmonary edema."])
        return s, f"{_cap(size)} pulmonary edema.", f"{size} pulmonary edema"
    if t == "Support Devices":
        sub = f["subtype"]
        if sub == "endotracheal tube":
            d = f.get("measurements", {}).get("tip_to_carina_cm", 4.0)
            s = pick([f"An endotracheal tube terminates approximately {d:.0f} cm above the carina.",
                      f"Endotracheal tube tip is {d:.0f} cm above the carina."])
            return s, "Endotracheal tube in standard position.", "endotracheal tube"
        if sub == "central venous catheter":
            s = pick(["A right internal jugular central venous catheter terminates in the superior vena cava.",
                      "Right-sided central venous catheter with its tip projecting over the superior vena cava."])
            return s, "Right central venous catheter in place.", "right central venous catheter"
        s = pick(["A left-sided pacemaker is present with its lead tip projecting over the right ventricle.",
                  "Left chest wall pacemaker with a lead in the right ventricle."])
        return s, "Left-sided pacemaker.", "left-sided pacemaker"
    raise ValueError(f"no report phrasing for finding type {t!r}")


def write_report(findings: list[dict], rng: np.random.Generator) -> tuple[str, list[str]]:
    """(report text, key phrases) for a list of finding dicts (type, side, size, location, ...)."""
    def pick(options):
        return options[int(rng.integers(len(options)))]

    types = {f["type"] for f in findings}
    order = {"Support Devices": 0, "Cardiomegaly": 1, "Edema": 2, "Consolidation": 3, "Lung Opacity": 4,
             "Lung Lesion": 5, "Atelectasis": 6, "Pleural Effusion": 7, "Pneumothorax": 8}
    ordered = sorted(findings, key=lambda f: order[f["type"]])
    positives = [_positive(f, pick) for f in ordered]
    devices = [p[0] for f, p in zip(ordered, positives) if f["type"] == "Support Devices"]
    sentences = list(devices)  # devices first, as radiologists list lines and tubes first
    keys = [p[2] for p in positives]
    negatives: list[str] = []

    if "Cardiomegaly" not in types:
        sentences.append(pick(["Heart size is normal.", "The heart is normal in size.",
                               "The cardiomediastinal silhouette is within normal limits.",
                               "Heart size is within normal limits."]))
        negatives.append("normal heart size")
    if rng.random() < 0.5:
        sentences.append(pick(["The mediastinal contours are normal.", "The mediastinum is not widened."]))
    sentences += [p[0] for f, p in zip(ordered, positives) if f["type"] != "Support Devices"]
    if not types & set(PARENCHYMAL) and "Pneumothorax" not in types:
        text, key = pick([("The lungs are clear.", "lungs are clear"),
                          ("The lungs are clear without focal consolidation.", "lungs are clear"),
                          ("No focal airspace consolidation.", "no focal consolidation")])
        sentences.append(text)
        negatives.append(key)
    elif not types & {"Consolidation", "Lung Opacity"}:
        sentences.append("No focal consolidation.")
        negatives.append("no focal consolidation")
    if "Edema" not in types and "Cardiomegaly" in types:
        sentences.append("No pulmonary edema.")
        negatives.append("no pulmonary edema")
    no_eff, no_ptx = "Pleural Effusion" not in types, "Pneumothorax" not in types
    if no_eff and no_ptx and rng.random() < 0.5:
        sentences.append(pick(["No pleural effusion or pneumothorax.", "There is no pleural effusion or pneumothorax."]))
    else:
        if no_eff:
            sentences.append(pick(["No pleural effusion.", "There is no pleural effusion."]))
        if no_ptx:
            sentences.append(pick(["No pneumothorax.", "There is no pneumothorax."]))
    negatives += (["no pleural effusion"] if no_eff else []) + (["no pneumothorax"] if no_ptx else [])
    if rng.random() < 0.4:
        sentences.append(pick(["No acute osseous abnormality.", "The visualized osseous structures are intact."]))

    impression = " ".join(p[1] for p in positives) if positives else pick(
        ["No acute cardiopulmonary abnormality.", "No acute cardiopulmonary process.", "Normal chest radiograph."])
    return f"FINDINGS: {' '.join(sentences)} IMPRESSION: {impression}", keys + negatives
