"""Does the model's image pathway carry a finding? A linear probe on the soft image tokens the decoder reads
(SMA_v output, mean- and max-pooled over the memory queries), trained on one split and scored (AUROC) on another,
beside how often the model's own reports name the finding (docs/learning_loop.md, issue 18).

    python benchmarks/probe_image_tokens.py --model assets/model --data /work/data/loop_s19 --train train --test val

A finding the probe separates but the reports never name is a wording/calibration error a fine-tune could fix;
one the probe cannot separate is beyond what any fine-tune of the decoder can read. Phantom data only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

FINDINGS = ("Atelectasis", "Lung Lesion", "Lung Opacity", "Consolidation", "Pleural Effusion", "Pneumothorax")


def features(model_dir: str, entries: list[dict], root: str):
    import numpy as np
    import torch
    from PIL import Image

    from model.phantom.store import load_masks
    from model.s2d.generate import load_generator

    gen, feats = load_generator(model_dir), []
    with torch.no_grad():
        for i in range(0, len(entries), 64):
            part = entries[i:i + 64]
            px, maps = gen.preprocess([np.asarray(Image.open(os.path.join(root, e["image_path"][0])).convert("L"))
                                       for e in part], [load_masks(os.path.join(root, e["masks"]))[0] for e in part])
            tok = gen.model.get_image_features(px, maps).tokens.float()  # [B, M, D]
            feats.append(torch.cat([tok.mean(1), tok.amax(1)], 1))
    return torch.cat(feats)


def probe(x_tr, y_tr, x_te, steps: int = 500, wd: float = 1e-2):
    import torch

    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    a, b = (x_tr - mu) / sd, (x_te - mu) / sd
    w = torch.zeros(a.shape[1], requires_grad=True)
    c = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, c], max_iter=steps)
    y = torch.tensor(y_tr, dtype=torch.float32)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(a @ w + c, y) + wd * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return (b @ w + c).detach().numpy()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=os.path.join(ROOT, "assets", "model"))
    p.add_argument("--data", required=True)
    p.add_argument("--train", default="train")
    p.add_argument("--test", default="val")
    a = p.parse_args(argv)
    import torch

    from model.report.gate import gold_from_findings, score_case
    from model.s2d.finetune import generate_reports
    from model.stats import auroc

    torch.set_num_threads(2)
    ann = json.load(open(os.path.join(a.data, "annotation.json")))
    tr, te = ann[a.train], ann[a.test]
    x_tr, x_te = features(a.model, tr, a.data), features(a.model, te, a.data)
    reports = generate_reports(a.model, te, a.data)
    out = {"model": a.model, "data": a.data, "train": len(tr), "test": len(te), "findings": {}}
    for f in FINDINGS:
        y_tr = [f in gold_from_findings(e["findings"]) for e in tr]
        y_te = [f in gold_from_findings(e["findings"]) for e in te]
        named = [f not in score_case(r, {f: gold_from_findings(e["findings"])[f]}).missed
                 for r, e, y in zip(reports, te, y_te) if y]
        false = sum(f in score_case(r, {}).false_alarm for r, e, y in zip(reports, te, y_te) if not y)
        out["findings"][f] = {"present": sum(y_te), "probe_auroc": round(auroc(probe(x_tr, y_tr, x_te), y_te), 3),
                              "reports_name_it": sum(named), "false_alarms": false}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
