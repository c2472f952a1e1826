from __future__ import annotations

from django.contrib import admin

from .models import SimulationRecord


@admin.register(SimulationRecord)
class SimulationRecordAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "seed", "sim_time", "running", "created")
    search_fields = ("id", "name")
    readonly_fields = ("created", "updated", "control_token_hash")
