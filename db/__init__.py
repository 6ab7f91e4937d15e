"""GroundCXR review store: SQLAlchemy 2 + Alembic (docs/store.md). Never imports torch.

The service API is `db.store.Store`; `python -m db --help` lists the command-line tools.
"""
import os

DEFAULT_URL = "sqlite:///groundcxr.db"  # in the working directory


def default_url() -> str:
    return os.environ.get("GROUNDCXR_DB") or DEFAULT_URL
