"""The domain gate as a mechanism (docs/grounding.md): phantom test films vs real films, shifted phantoms, and a gate
refitted with real training films.

    nice python benchmarks/bench_domain.py --data data/p6k [--model assets/model] [--n 600] [--json out.json]

- AUROC of the domain score, phantom test films (never trained on) vs the real films in ../shared: the covid-lungs
  val split and the project's sanity films (IU and NIH frontals); inside-rate of phantom test films.
- Shifted phantom test films, shifts the gate never saw: noise, rotation, inversion, a crop, another resolution.
- The same mechanism refitted with the covid-lungs *train* films' features added (not shipped): the share of
  covid-lungs val films it accepts.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from model.atomic import atomic_write_json  # noqa: E402
from model.data import load_r2gen  # noqa: E402
from model.grounding.harness import auroc  # noqa: E402
from model.imageio import read_radiograph  # noqa: E402
from model.s2d.domain import DomainGate, film_features  # noqa: E402
from model.s2d.generate import load_generator  # noqa: E402
from model.segmentation.realfilms import DEFAULT_ROOT, read_films  # noqa: E402

SANITY = ["iu-xray-images/CXR1900_IM-0584-1001.png", "iu-xray-images/CXR3_IM-1384-1001.png",
          "iu-xray-images/CXR7_IM-2263-1001.png", "nih-cxr14/00000001_000.png", "nih-cxr14/00027426_000.png"]
SHIFTS = {
    "noise": lambda x, r: np.clip(x + r.normal(0, 0.08, x.shape), 0, 1),
    "rotation 15°": lambda x, r: cv2.warpAffine(x, cv2.getRotationMatrix2D((x.shape[1] / 2, x.shape[0] / 2), 15, 1.0),
                                               (x.shape[1], x.shape[0])),
    "inversion": lambda x, r: 1.0 - x,
    "crop (central 60 %)": lambda x, r: x[int(.2 * x.shape[0]):int(.8 * x.shape[0]), int(.2 * x.shape[1]):int(.8 * x.shape[1])],
    "resolution 64 px": lambda x, r: cv2.resize(cv2.resize(x, (64, 64), interpolation=cv2.INTER_AREA), x.shape[::-1]),
    # another site's grey-level look-up (benchmarks/site_world.py): 0.7 doubles the default model's errors
    "look-up gamma 0.7": lambda x, r: x ** 0.7,
    "look-up gamma 0.8": lambda x, r: x ** 0.8,
    "look-up gamma 1.6": lambda x, r: x ** 1.6,
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="the phantom dataset the model was trained on (test split used)")
    ap.add_argument("--model", default=os.path.join(ROOT, "assets", "model"))
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(ROOT), "shared", "data"))
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    gen = load_generator(args.model)
    gate = DomainGate.load(args.model)
    if gate is None:
        raise SystemExit(f"error: {args.model} has no domain gate (python -m model domain --model ... --data ...)")
    test = load_r2gen(os.path.join(args.data, "annotation.json"))["test"][:args.n]
    phantoms = [read_radiograph(e.image_paths[0]) for e in test]
    ph = film_features(gen, phantoms)
    out = {"model": args.model, "limit": gate.limit, "phantom_test": len(phantoms),
           "phantom_test_inside": round(float(np.mean(gate.scores(ph) <= gate.limit)), 4)}
    real_val = read_films(DEFAULT_ROOT, "val") if os.path.isdir(DEFAULT_ROOT) else []
    real_imgs = [f.load()[0] for f in real_val]
    sanity = [os.path.join(args.shared, p) for p in SANITY if os.path.isfile(os.path.join(args.shared, p))]
    real_imgs += [read_radiograph(p) for p in sanity]
    out["real_films"] = {"covid-lungs val": [f.id for f in real_val], "sanity": [os.path.basename(p) for p in sanity]}
    if real_imgs:
        rf = film_features(gen, real_imgs)
        s_ph, s_real = gate.scores(ph), gate.scores(rf)
        out["auroc_real_vs_phantom"] = round(float(auroc(np.r_[s_real, s_ph], np.r_[np.ones(len(s_real)),
                                                                                 np.zeros(len(s_ph))])), 4)
        out["real_inside"] = round(float(np.mean(s_real <= gate.limit)), 4)
        out["real_score_median"] = round(float(np.median(s_real)), 1)
    rng = np.random.default_rng(0)
    out["shifted_phantoms_flagged"] = {}
    for name, f in SHIFTS.items():
        shifted = [np.ascontiguousarray(f(x.astype(np.float32), rng)).astype(np.float32) for x in phantoms[:100]]
        out["shifted_phantoms_flagged"][name] = round(float(np.mean(gate.scores(film_features(gen, shifted))
                                                                    > gate.limit)), 3)
    if real_val:
        train = read_films(DEFAULT_ROOT, "train")
        tf = film_features(gen, [f.load()[0] for f in train])
        # the same mechanism on phantoms + real training films: does it accept unseen real films of that kind?
        n0 = int(gate.info.get("n_train", len(ph)))
        refit = DomainGate(gate.mean, gate.cov, gate.limit, {"n_train": n0}).merge(tf)
        vf = film_features(gen, [f.load()[0] for f in real_val])
        out["refit_with_real_train"] = {"train_films": len(train),
                                        "covid_val_inside": round(float(np.mean(refit.scores(vf) <= refit.limit)), 4),
                                        "phantom_test_inside": round(float(np.mean(refit.scores(ph) <= refit.limit)), 4)}
    print(json.dumps(out, indent=1))
    if args.json:
        atomic_write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
