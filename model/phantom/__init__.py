"""The phantom chest X-ray world: seeded synthetic frontal radiographs with CXAS-named anatomy masks, pathology
masks, a structured findings record, a report, a prior study's report and gold key phrases (docs/phantom.md).

No torch here: numpy + OpenCV only, so data tools and the app can use it cheaply.
"""
from .findings import FINDING_TYPES
from .generate import DEFAULT_KNOBS, PhantomCase, generate_case
from .store import load_case, load_masks, write_case, write_dataset

__all__ = ["DEFAULT_KNOBS", "FINDING_TYPES", "PhantomCase", "generate_case", "load_case", "load_masks", "write_case",
           "write_dataset"]
