"""The S2D-ALIGN ablation study on the phantom benchmark (docs/ablation.md); the driver is model/s2d/ablation.py.

    nice -n 15 python benchmarks/run_ablation.py            # everything: data, 7 variants x 3 seeds, doc + JSON
    python benchmarks/run_ablation.py --report-only          # rebuild docs/ablation.{md,json} from finished runs
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from model.s2d.ablation import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
