"""WebSocket URL routes, mounted by `dashboard.asgi`."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, re_path

from .consumers import SimulationConsumer

websocket_urlpatterns: list[URLPattern | URLResolver] = [
    re_path(r"^ws/simulations/(?P<sim_id>[0-9a-f]{1,32})/$", SimulationConsumer.as_asgi()),
]
