"""`python -m model generate` with each phantom image's own anatomy masks (for `python -m db generate --generator`).

    python -m db generate --model DIR --generator "python benchmarks/phantom_generator.py"

db calls `GENERATOR --model DIR --ground --out DIR IMAGE...`; this passes everything through and adds
`--masks` with the phantom's mask file of each image (DATASET/images/<id>.png -> DATASET/masks/<id>.npz).
Why not the segmenter: the atlas segmenter refuses small phantoms whose lung field a large effusion fills
("a lung field is too small ... not a frontal chest radiograph"), and those are the cases the learning loop is about.
"""
from __future__ import annotations

import os
import subprocess
import sys


def masks_of(image: str) -> str:
    folder, name = os.path.split(os.path.abspath(image))
    path = os.path.join(os.path.dirname(folder), "masks", os.path.splitext(name)[0] + ".npz")
    if not os.path.isfile(path):
        raise SystemExit(f"error: no phantom masks for {image} (looked for {path})")
    return path


def main(argv: list[str]) -> int:
    options, images, i = [], [], 0
    while i < len(argv):
        if argv[i] in ("--model", "--out", "--method", "--max-new-tokens"):
            options += argv[i:i + 2]
            i += 2
        elif argv[i].startswith("--"):
            options.append(argv[i])
            i += 1
        else:
            images.append(argv[i])
            i += 1
    if not images:
        raise SystemExit("error: no images given")
    cmd = [sys.executable, "-m", "model", "generate", *options, *images, "--masks", *map(masks_of, images)]
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
