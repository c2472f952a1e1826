"""Turn the dashboard's HTML forms into the same command documents the JSON API takes."""

from __future__ import annotations

from typing import Any

from django.http import QueryDict

SCALARS = (
    "consumer",
    "producer",
    "value",
    "instance",
    "to",
    "event_id",
    "from",
    "topic",
    "partition",
)


def command_from_form(data: QueryDict) -> dict[str, Any]:
    """A command dict from posted form fields (numbers stay strings; the engine checks them)."""
    command: dict[str, Any] = {"command": data.get("command", "")}
    if command["command"] in ("consumer.add", "service.add"):
        command["from"] = data.get("from") or "latest"
        command["consumer"] = _consumer_spec(data)
        return command
    for key in SCALARS:
        value = data.get(key)
        if value not in (None, ""):
            command[key] = value
    for key in ("value", "instance", "event_id", "partition"):
        if key in command:
            command[key] = _number(command[key])
    return command


def _number(text: str) -> Any:
    try:
        number = float(text)
    except ValueError:
        return text  # the engine's validation names the field and the problem
    return int(number) if number.is_integer() else number


def _consumer_spec(data: QueryDict) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": (data.get("name") or "").strip(),
        "topics": data.getlist("topics"),
        "processing": {
            "dist": data.get("dist") or "exponential",
            "mean_ms": _number(data.get("mean_ms") or "20"),
        },
        "instances": _number(data.get("instances") or "1"),
        "idempotent": data.get("idempotent") in ("on", "true", "1"),
    }
    if data.get("label"):
        spec["label"] = data["label"]
    events = [e.strip() for e in (data.get("events") or "").split(",") if e.strip()]
    if events:
        spec["events"] = events
    if data.get("filter_field"):
        spec["filter"] = {
            "field": data["filter_field"],
            "op": data.get("filter_op") or "==",
            "value": _number(data.get("filter_value") or ""),
        }
    return spec
