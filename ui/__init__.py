"""The Gradio layer: layout (layout.py), handlers taking and returning plain values (handlers.py), the screen's
plain-value composition (screen.py) and the gradio_client API (api.py), over the review service (review/).

    demo = build_app(service)       # a gr.Blocks
    launch(service, host, port)     # serve it
"""
from __future__ import annotations

import gradio as gr

from model import ASSETS_DIR
from review.service import ReviewService
from ui.api import register_api
from ui.handlers import Handlers, wire
from ui.layout import CSS, build_layout


def build_app(service: ReviewService, title: str = "GroundCXR review") -> gr.Blocks:
    with gr.Blocks(title=title) as demo:
        c = build_layout(service, title)
        wire(c, Handlers(service, c), demo)
        register_api(service)
    return demo


def launch(service: ReviewService, host: str = "127.0.0.1", port: int | None = None, auth=None,
           block: bool = True) -> gr.Blocks:
    """Serve the app. Only assets/ and the app's data folder are readable through gradio's file routes."""
    demo = build_app(service)
    demo.queue(default_concurrency_limit=2)
    demo.launch(server_name=host, server_port=port, auth=auth, prevent_thread_lock=not block,
                allowed_paths=[ASSETS_DIR, service.data_dir], css=CSS, footer_links=["api"], show_error=False,
                quiet=True, ssr_mode=False)
    return demo
