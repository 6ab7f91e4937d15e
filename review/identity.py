"""Who a request acts as (the store's rules, db/names.py, which needs no database): with login the logged-in user,
and a reviewer argument that names anyone else is refused; without login the name given, normalised, unverified."""
from db.names import IdentityError, normalise_name, session_reviewer  # noqa: F401

UNVERIFIED_NOTE = ("Names are not verified: without login anyone can type any reviewer name. Start the app with "
                   "--user NAME:PASSWORD to record the logged-in name on every correction.")
