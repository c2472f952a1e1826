"""The share link's QR code, drawn on the server for presenter mode."""

from __future__ import annotations

import segno
from django.template import Context, Template

from dashboard.templatetags.qr import MAX_URL_CHARS, qr_svg


def test_the_share_link_becomes_an_svg_qr_code_a_screen_reader_can_name() -> None:
    url = "http://127.0.0.1:8000/simulations/abcdef123456/"
    svg = str(qr_svg(url))
    assert svg.startswith('<svg role="img" aria-label="Scan to watch this run" ')
    assert "<title>Scan to watch this run</title>" in svg
    # the drawn modules are the QR code of this very address (segno's own encoding of it)
    expected = segno.make(url, error="m")
    assert f'viewBox="0 0 {(expected.symbol_size(scale=4, border=2))[0]} ' in svg


def test_no_code_is_drawn_for_an_empty_or_absurd_address() -> None:
    assert str(qr_svg("")) == ""
    assert str(qr_svg("http://x/" + "a" * MAX_URL_CHARS)) == ""


def test_the_label_is_escaped_in_the_svg() -> None:
    svg = str(qr_svg("http://x/", label='say "hi" <b>'))
    assert 'aria-label="say &quot;hi&quot; &lt;b&gt;"' in svg
    assert "<b>" not in svg


def test_the_share_box_renders_the_qr_and_the_present_button() -> None:
    html = Template('{% include "_share_box.html" %}').render(
        Context({"share_url": "http://h/simulations/abc/"})
    )
    assert 'id="present-toggle"' in html
    assert '<svg role="img"' in html
    assert "http://h/simulations/abc/" in html
