"""The closed learning loop, measured (docs/learning_loop.md); the loop itself is review/learning_loop.py.

    python benchmarks/learning_loop.py                  # larger size; prints the numbers as JSON
    python benchmarks/learning_loop.py --n-train 80 --n-review 10   # the size tests/test_learning_loop.py uses
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from review.learning_loop import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
