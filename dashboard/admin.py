from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import SavedScenario, SimulationRecord


@admin.register(SimulationRecord)
class SimulationRecordAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "seed", "sim_time", "running", "created")
    search_fields = ("id", "name")
    readonly_fields = ("created", "updated", "control_token_hash")


@admin.register(SavedScenario)
class SavedScenarioAdmin(admin.ModelAdmin):
    list_display = ("name", "id", "owner", "format", "valid", "updated")
    search_fields = ("name",)
    list_filter = ("format", "valid")
    # a session key is a credential: show enough to tell owners apart, not enough to use it
    exclude = ("owner_session",)
    readonly_fields = ("owner", "format", "valid", "forked_from", "created", "updated")

    @admin.display(description="owner")
    def owner(self, obj: SavedScenario) -> str:
        return f"{obj.owner_session[:8]}…" if obj.owner_session else "-"

    def save_model(self, request: HttpRequest, obj: SavedScenario, form: Any, change: bool) -> None:
        # text edited here is checked the way the editor checks it
        from .scenario_views import detect_format, validate_text

        obj.format = detect_format(obj.text)
        obj.valid = validate_text(obj.text)[0] is not None
        super().save_model(request, obj, form, change)
