"""ASGI entry point: HTTP goes to Django, WebSockets to Channels consumers.

Serve with: daphne -b 127.0.0.1 -p 8000 dashboard.asgi:application
"""

from __future__ import annotations

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

# Build the Django ASGI app first: it sets up the app registry, which the imports below
# (auth middleware, consumers and their models) need.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from dashboard import transport  # noqa: E402
from dashboard.origin import SameOriginValidator  # noqa: E402
from dashboard.routing import websocket_urlpatterns  # noqa: E402

transport.install()  # a bound on what daphne buffers for a client that does not read

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Same origin, port included (Channels' AllowedHostsOriginValidator ignores the port).
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# Everything loaded by now (Django, Channels, daphne, the simulator) lives as long as the
# process. Freezing it keeps it out of the cyclic collector's full passes, which otherwise walk
# it every time and hold the event loop for ~55 ms each here (/tmp probe: a full collection of
# this process took 52-57 ms before, 3-9 ms after, with a 100,000-record simulation running).
# Objects made later are collected as before; frozen ones are still freed by reference counts.
gc.collect()
gc.freeze()
