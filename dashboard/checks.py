"""Fanout's own system checks: what `check --deploy` must catch before every page is a 500."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage
from django.core.checks import CheckMessage, Error, register

COLLECTSTATIC_HINT = "run `python manage.py collectstatic --noinput`"


# A deploy check, not one that runs before every command: `collectstatic` itself and
# `migrate` must still run while the manifest is missing.
@register(deploy=True)
def static_manifest_exists(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """With DEBUG off, the manifest storage answers every `{% static %}` from
    STATIC_ROOT/staticfiles.json; without that file, every page that names a static file
    fails with "Missing staticfiles manifest entry"."""
    if settings.DEBUG or not isinstance(staticfiles_storage, ManifestFilesMixin):
        return []
    if not settings.STATIC_ROOT:
        return [Error("STATIC_ROOT is not set.", hint=COLLECTSTATIC_HINT, id="fanout.E001")]
    manifest = Path(settings.STATIC_ROOT) / staticfiles_storage.manifest_name
    if manifest.is_file():
        return []
    return [
        Error(
            f"The static files manifest {manifest} is missing: with DEBUG off, every page "
            "would fail with a server error.",
            hint=COLLECTSTATIC_HINT,
            id="fanout.E001",
        )
    ]
