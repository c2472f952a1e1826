from __future__ import annotations

from django.apps import AppConfig


class DashboardConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "dashboard"
    verbose_name = "Fanout dashboard"

    def ready(self) -> None:
        from dashboard import checks  # noqa: F401  (registers the system checks)
