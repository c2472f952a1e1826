"""``{% qr_svg url %}``: a QR code of the share link, as inline SVG rendered on the server.

A class watching a projector scans it instead of typing the address. segno (pure Python,
no image library) draws it; error correction M survives a projector's glare and blur.
"""

from __future__ import annotations

import io

import segno
from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

MAX_URL_CHARS = 2000  # a share link is far shorter; anything longer is not drawn


@register.simple_tag
def qr_svg(url: str, label: str = "Scan to watch this run") -> SafeString:
    """The QR code of ``url`` as an ``<svg>`` with a title (empty for an empty or huge url)."""
    text = str(url or "")
    if not text or len(text) > MAX_URL_CHARS:
        return mark_safe("")
    out = io.BytesIO()
    segno.make(text, error="m").save(
        out,
        kind="svg",
        scale=4,
        border=2,
        xmldecl=False,
        svgns=True,
        title=label,
        svgclass="qr",
        lineclass=None,
        omitsize=True,
        dark="#000",
        light="#fff",
    )
    svg = out.getvalue().decode("utf-8")
    # segno escapes the title itself; the attributes are ours: role and label for readers
    return mark_safe(svg.replace("<svg ", f'<svg role="img" aria-label="{escape(label)}" ', 1))
