"""The Gradio layer: layout (layout.py), handlers taking and returning plain values (handlers.py), the screen's
plain-value composition (screen.py) and the gradio_client API (api.py), over the review service (review/).

    demo = build_app(service)       # a gr.Blocks
    launch(service, host, port)     # serve it
"""
from __future__ import annotations

import os

import gradio as gr
from starlette.middleware import Middleware

from model import ASSETS_DIR, PROJECT_ROOT
from review.service import ReviewService
from ui.api import register_api
from ui.handlers import Handlers, wire
from ui.layout import CSS, build_layout
from ui.web import SecurityMiddleware

MAX_UPLOAD = "100mb"  # refused by Gradio's upload route (413) before the bytes reach a handler
# Gradio's cache holds only what the browser was sent (rendered images, an export zip); sweep it hourly.
CACHE_SWEEP = (3600, 3600)
# Keyboard shortcuts and click-to-select in the report (ui/review.js): run once when the page loads.
PAGE_JS = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "review.js"), encoding="utf-8").read()


def build_app(service: ReviewService, title: str = "GroundCXR review", login: bool = False) -> gr.Blocks:
    with gr.Blocks(title=title, delete_cache=CACHE_SWEEP) as demo:
        c = build_layout(service, title, login=login)
        wire(c, Handlers(service, c), demo)
        register_api(service)
    return demo


def blocked_paths(service: ReviewService) -> list[str]:
    """Folders no route may serve: the data folder (database, uploads, exports, fine-tuned models), the project
    (assets with the model weights, source) and, for a SQLite store elsewhere, its folder."""
    paths = [service.data_dir, ASSETS_DIR, PROJECT_ROOT]
    db_file = getattr(service.store, "database_file", None)
    if db_file:
        paths.append(os.path.dirname(os.path.abspath(db_file)))
    return sorted(set(paths))


def launch(service: ReviewService, host: str = "127.0.0.1", port: int | None = None, auth=None,
           block: bool = True) -> gr.Blocks:
    """Serve the app. Gradio's file route serves only its own cache (what this page was sent); the data folder,
    the project and the store's folder are blocked (docs/security.md)."""
    demo = build_app(service, login=auth is not None)
    demo.queue(default_concurrency_limit=4)
    demo.launch(server_name=host, server_port=port, auth=auth, prevent_thread_lock=not block,
                allowed_paths=[], blocked_paths=blocked_paths(service), max_file_size=MAX_UPLOAD,
                app_kwargs={"middleware": [Middleware(SecurityMiddleware)]}, css=CSS, js=PAGE_JS, footer_links=["api"],
                show_error=False, quiet=True, ssr_mode=False)
    return demo
