"""WebSocket URL routes, mounted by `dashboard.asgi`."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, re_path

from .consumers import NoSuchSocket, SimulationConsumer

websocket_urlpatterns: list[URLPattern | URLResolver] = [
    re_path(r"^ws/simulations/(?P<sim_id>[0-9a-f]{1,32})/$", SimulationConsumer.as_asgi()),
    # any other path: refused with a close code, not an exception in the router (a 500)
    re_path(r"", NoSuchSocket.as_asgi()),
]
