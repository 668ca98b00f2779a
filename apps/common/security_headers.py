"""Security headers on every response, on by default (Django 5.2 has no CSP of its own).

Content-Security-Policy: scripts, styles, images, fonts and connections from the site itself
only (`'self'` also covers the portal's ws:/wss: websocket on the same host), no plugins, no
framing (`frame-ancestors 'none'`, beside X-Frame-Options DENY), forms posting to the site only.
The inline code the templates carry is allowed by hash, not by 'unsafe-inline': every inline
`<style>` block, `<script>` block and event-handler attribute (`onsubmit="..."`) in the
templates of the project and its installed apps whose text has no template syntax is hashed
once per process (templates are code: hashing their source never lets injected text through;
text rendered from data cannot match a hash). A block with template syntax in it cannot be
hashed: move it to a static file. `style` attributes are allowed (`style-src-attr
'unsafe-inline'`): the optimisation heatmap colours cells with them, and a style attribute
cannot run script.

The API docs page (drf-spectacular's Swagger UI) loads its bundle from the CDN named in
SPECTACULAR_SETTINGS["SWAGGER_UI_DIST"]: that origin is added for /api/docs/ only.

Also: Permissions-Policy (no camera, microphone, geolocation, payment, USB, ...), and
Cross-Origin-Opener-Policy same-origin when Django's SecurityMiddleware did not set one. A view
that sets one of these headers itself keeps its own. HSTS, secure cookies, nosniff and the
Referrer-Policy come from Django's settings (base.py, prod.py).
"""

import base64
import hashlib
import re
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.apps import apps
from django.conf import settings
from django.http import HttpRequest, HttpResponse

DOCS_PATH = "/api/docs/"
# lightweight-charts (static/vendor) adds this <style> for its attribution logo.
VENDOR_STYLE_HASHES = (
    "'sha256-"
    + base64.b64encode(
        hashlib.sha256(
            b"a#tv-attr-logo{--fill:#131722;--stroke:#fff;position:absolute;left:10px;bottom:10px;height:19px;"
            b"width:35px;margin:0;padding:0;border:0;z-index:3;}a#tv-attr-logo[data-dark]{--fill:#D1D4DC;--stroke:#131722;}"
        ).digest()
    ).decode()
    + "'",
)
PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()"
)

_STYLE = re.compile(r"<style\b[^>]*>(.*?)</style>", re.S | re.I)
_SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.S | re.I)
_HANDLER = re.compile(r"""\son[a-z]+\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)
_SCRIPT_TYPES = {"", "text/javascript", "module", "application/javascript"}
_TYPE = re.compile(r"""\btype\s*=\s*["']?([^"'\s>]+)""", re.I)


def _digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _static(text: str) -> bool:
    return "{{" not in text and "{%" not in text


def _template_files() -> Iterator[Path]:
    engines: list[dict[str, Any]] = settings.TEMPLATES
    folders = [Path(folder) for engine in engines for folder in engine.get("DIRS", [])]
    folders += [Path(config.path) / "templates" for config in apps.get_app_configs()]
    for folder in folders:
        if folder.is_dir():
            yield from folder.rglob("*.html")


@cache
def inline_hashes() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(script hashes, style hashes) of the templates' static inline code."""
    scripts: set[str] = set()
    styles: set[str] = set(VENDOR_STYLE_HASHES)
    for path in _template_files():
        source = path.read_text(errors="replace")
        styles.update(_digest(block) for block in _STYLE.findall(source) if _static(block))
        for attributes, body in _SCRIPT.findall(source):
            kind = _TYPE.search(attributes)
            if "src=" not in attributes and (kind.group(1) if kind else "").lower() in _SCRIPT_TYPES and _static(body):
                scripts.add(_digest(body))
        for double, single in _HANDLER.findall(source):
            handler = double or single
            if _static(handler):
                scripts.add(_digest(handler))
    return tuple(sorted(scripts)), tuple(sorted(styles))


@cache
def _docs_origin() -> str:
    dist = getattr(settings, "SPECTACULAR_SETTINGS", {}).get("SWAGGER_UI_DIST", "")
    if not dist:
        from drf_spectacular.settings import spectacular_settings

        dist = spectacular_settings.SWAGGER_UI_DIST
    parts = urlsplit(str(dist))
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in {"http", "https"} else ""


def content_security_policy(path: str) -> str:
    scripts, styles = inline_hashes()
    extra = [_docs_origin()] if path.startswith(DOCS_PATH) and _docs_origin() else []
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'", *(["'unsafe-hashes'", *scripts] if scripts else []), *extra],
        "style-src": ["'self'", *styles, *extra],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": ["'self'", "data:", *extra],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", content_security_policy(request.path))
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        return response
