"""The S2D-ALIGN ablation study on the phantom benchmark (docs/ablation.md has the exact commands); the driver is
model/s2d/ablation.py.

    python benchmarks/run_ablation.py --pilot        # full curriculum, seed 0: does the preset read the image?
    nice -n 15 python benchmarks/run_ablation.py     # the study: 7 variants x 3 seeds (refused until the pilot passed)
    python benchmarks/run_ablation.py --report-only  # docs/ablation.md from docs/ablation.json
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from model.s2d.ablation import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
