"""GroundCXR model package: phantom world, segmentation, S2D-ALIGN report generator, report understanding, grounding.

Importing this package must stay cheap (no torch): `db/` and `viewer/` import the plain types in `model.types`.
"""
import os

# Offline by design: nothing is fetched from a hub at run time, and nothing phones home.
for _key, _value in (("GRADIO_ANALYTICS_ENABLED", "False"), ("HF_HUB_OFFLINE", "1"),
                     ("HF_HUB_DISABLE_TELEMETRY", "1"), ("TRANSFORMERS_OFFLINE", "1")):
    os.environ.setdefault(_key, _value)

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS_DIR = os.path.join(PROJECT_ROOT, "assets")
