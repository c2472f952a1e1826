"""Saved scenarios, under ``/scenarios/``."""

from __future__ import annotations

from django.urls import path

from dashboard import scenario_views as views

urlpatterns = [
    path("", views.scenario_list, name="scenario_list"),
    path("new", views.scenario_new, name="scenario_new"),
    path("import", views.scenario_import, name="scenario_import"),
    path("<str:scenario_id>/", views.scenario_editor, name="scenario_editor"),
    path("<str:scenario_id>/fork", views.scenario_fork, name="scenario_fork"),
    path("<str:scenario_id>/export", views.scenario_export, name="scenario_export"),
    path("<str:scenario_id>/start", views.scenario_start, name="scenario_start"),
    path("<str:scenario_id>/delete", views.scenario_delete, name="scenario_delete"),
]
