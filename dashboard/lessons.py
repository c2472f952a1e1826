"""Guided lessons (filled in by the lessons work; empty until then)."""

from __future__ import annotations


def lesson_links() -> list[dict[str, str]]:
    return []
