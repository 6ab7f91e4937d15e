"""What every HTTP answer carries and who may try to log in: an ASGI middleware in front of Gradio's app.

- Anti-framing and content-security headers on every response (the review screen must not be framed by another
  site, nor load script or data from one).
- Login attempts limited per client address (review.throttle.LoginThrottle): a refused attempt is answered 429
  before the password is checked.
"""
from __future__ import annotations

import json

from review.throttle import LoginThrottle

# Everything comes from this origin and the page may not be framed (frame-ancestors, and X-Frame-Options for older
# browsers). Gradio 6's front end needs inline styles and scripts, and 'unsafe-eval': gr.HTML renders its
# templates with new Function (without it no report shows: tests/test_app_browser.py). What stops injected markup is
# the escaping of stored text (viewer/), which the browser tests check with hostile sentences.
CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; media-src 'self' data: blob:; font-src 'self' data:; "
       "connect-src 'self' ws: wss:; worker-src 'self' blob:; frame-ancestors 'none'; object-src 'none'; "
       "base-uri 'self'; form-action 'self'")
SECURITY_HEADERS = [(b"x-frame-options", b"DENY"), (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
LOGIN_PATHS = ("/login", "/login/")


class SecurityMiddleware:
    def __init__(self, app, throttle: LoginThrottle | None = None):
        self.app = app
        self.throttle = throttle or LoginThrottle()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        login = scope["method"] == "POST" and scope["path"].endswith(LOGIN_PATHS)
        address = (scope.get("client") or ("unknown", 0))[0]
        if login:
            wait = self.throttle.wait(address)
            if wait > 0:
                return await _refuse(send, wait)
        status = {}

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                names = {k.lower() for k, _ in message.get("headers", [])}
                message = {**message, "headers": list(message.get("headers", []))
                           + [(k, v) for k, v in SECURITY_HEADERS if k not in names]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
        if login and status.get("code") == 200:
            self.throttle.succeeded(address)
        elif login and status.get("code") in (400, 401, 403):
            self.throttle.failed(address)


async def _refuse(send, wait: float) -> None:
    body = json.dumps({"detail": f"too many failed logins from this address; try again in {int(wait) + 1} s"})
    await send({"type": "http.response.start", "status": 429,
                "headers": [(b"content-type", b"application/json"), (b"retry-after", str(int(wait) + 1).encode())]
                + SECURITY_HEADERS})
    await send({"type": "http.response.body", "body": body.encode()})
