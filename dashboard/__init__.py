"""Fanout's Django project and app: settings, URLs, ASGI entry point, views and consumers."""
