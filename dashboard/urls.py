from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from dashboard import lessons, views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", views.home, name="home"),
    path("simulations/", views.simulation_create, name="simulation_create"),
    path("compare/", views.compare_create, name="compare_create"),
    # before simulations/<sim_id>/, which would take "mine" for an id
    path("simulations/mine/", views.my_simulations, name="my_simulations"),
    path("simulations/<str:sim_id>/", views.simulation_page, name="simulation_page"),
    path("simulations/<str:sim_id>/control", views.simulation_control, name="simulation_control"),
    path("simulations/<str:sim_id>/stop", views.simulation_stop, name="simulation_stop"),
    path("simulations/<str:sim_id>/delete", views.simulation_delete, name="simulation_delete"),
    path("scenarios/", include("dashboard.scenario_urls")),
    path("lessons/<slug:slug>/", lessons.lesson_page, name="lesson_page"),
    path("api/simulations", views.api_simulations, name="api_simulations"),
    path("api/simulations/<str:sim_id>", views.api_simulation, name="api_simulation"),
    path("api/simulations/<str:sim_id>/commands", views.api_commands, name="api_commands"),
    path("api/simulations/<str:sim_id>/stop", views.api_stop, name="api_stop"),
    path("api/simulations/<str:sim_id>/records", views.api_records, name="api_records"),
    path("api/simulations/<str:sim_id>/replay", views.api_replay, name="api_replay"),
]

handler404 = "dashboard.views.not_found"
handler500 = "dashboard.views.server_error"
