"""Pages, controls and the JSON API.

Pages work as plain HTML forms first; htmx improves them (``request.htmx`` gets a partial).
The API is for scripts and tests and authenticates with the ``control_token`` it returns.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.contrib import messages
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.text import capfirst
from django.utils.timesince import timesince
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from simulator import load_scenario
from simulator.cli import PRESETS
from simulator.lessons import lesson
from simulator.wording import span_text

from . import runner as runners
from . import services
from .clients import client_ip, origin_allowed
from .forms import command_from_form
from .models import SimulationRecord

SPEEDS = [0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50, 100]
MAX_BODY = 256 * 1024
ERR_BODY_TOO_LARGE = f"the request body is larger than {MAX_BODY // 1024} KB"
ERR_BAD_JSON = "the request body is not valid JSON"
ERR_NOT_OBJECT = "the request body must be a JSON object"
ERR_NO_PRESET = "unknown preset {slug!r}"
ERR_NO_CHAIN = "a comparison needs a 'chain': the services checkout calls, in order"
ERR_NO_SESSION = (
    "Fanout could not find your browser's session: open the home page and try again (Fanout "
    "needs its cookie to know which simulations are yours)"
)
ERR_CONTENT_TYPE = "send the body as JSON, with the header Content-Type: application/json"
ERR_ORIGIN = (
    "requests from another site's pages are not accepted: the Origin {origin!r} is not this site"
)
ERR_SEED = "seed must be a whole number from 0 to 2**63 - 1"
MAX_SEED = 2**63 - 1


def preset_list() -> list[dict[str, Any]]:
    """Every preset: ``slug``, ``name``, ``description``, and ``compare`` when it names a
    synchronous ``chain`` (it opens as the side-by-side comparison)."""
    out: list[dict[str, Any]] = []
    for path in sorted(PRESETS.glob("*.yaml")):
        sc = load_scenario(path)
        out.append(
            {
                "slug": path.stem,
                "name": sc.name,
                "description": sc.description,
                "compare": bool(sc.chain),
            }
        )
    return out


# A preset named lesson-* is a lesson's own scenario: the home page offers it through its lesson
# ("Open it live" there plays the lesson's steps), not a second time as a preset.
LESSON_PRESET_PREFIX = "lesson-"


def home_presets() -> list[dict[str, Any]]:
    """The presets the home page offers, each once, each with the page it opens (``url``)."""
    from simulator.lessons import LESSONS

    lessons_own = {item.preset for item in LESSONS}
    out = []
    for preset in preset_list():
        if preset["slug"] in lessons_own and preset["slug"].startswith(LESSON_PRESET_PREFIX):
            continue
        target = "compare_create" if preset["compare"] else "simulation_create"
        out.append({**preset, "url": reverse(target)})
    return out


def preset_text(slug: str) -> str | None:
    if not slug.replace("-", "").isalnum():
        return None
    path = PRESETS / f"{slug}.yaml"
    return path.read_text() if path.is_file() else None


def home(request: HttpRequest) -> HttpResponse:
    """The landing page: the lessons first (the teaching path), then the comparison, then the
    presets to play with."""
    from .lessons import lesson_links

    if not request.session.session_key:
        request.session.save()  # the forms below create simulations owned by this session
    presets = home_presets()
    return render(
        request,
        "home.html",
        {
            "comparisons": [p for p in presets if p["compare"]],
            "presets": [p for p in presets if not p["compare"]],
            "create_url": reverse("simulation_create"),
            "compare_url": reverse("compare_create"),
            "lessons": lesson_links(),
            "live_count": async_to_sync(services.live_count)(
                owner_session=request.session.session_key or ""
            ),
            "max_live": services.MAX_LIVE_PER_OWNER,
        },
    )


@require_POST
def simulation_create(request: HttpRequest) -> HttpResponse:
    """Start a simulation from a preset (or posted scenario text) and open its page."""
    return _create_from_form(request, mode="live")


@require_POST
def compare_create(request: HttpRequest) -> HttpResponse:
    """Start a side-by-side comparison (a scenario with a ``chain``) and open its page."""
    return _create_from_form(request, mode="compare")


def _create_from_form(request: HttpRequest, *, mode: str) -> HttpResponse:
    default = "sync-vs-events" if mode == "compare" else ""
    slug = request.POST.get("preset", default)
    text = request.POST.get("scenario") or preset_text(slug) or ""
    if not text:
        messages.error(request, ERR_NO_PRESET.format(slug=request.POST.get("preset", "")))
        return redirect("home")
    doc: Any = text
    guide = None
    found = lesson(request.POST.get("lesson", ""))
    if found is not None and found.preset == slug and not request.POST.get("scenario"):
        # "Open it live" from a lesson: its preset, set up and playing the lesson's steps, as
        # the lesson measured it, guided by its cards, asking its question on every screen
        from .guide import Guide
        from .lessons import measured

        doc = found.live_doc()
        guide = Guide.for_lesson(found, measured(found.slug)).to_json()
    scenario, errors = services.parse_scenario_or_errors(doc)
    try:
        seed = _int_or_none(request.POST.get("seed"))
    except ValueError:
        messages.error(request, ERR_SEED)
        return redirect("home")
    if scenario is not None and mode == "compare" and not scenario.chain:
        scenario, errors = None, [{"path": "chain", "message": ERR_NO_CHAIN}]
    if scenario is None:
        for e in errors:
            messages.error(request, f"{e['path']}: {e['message']}" if e["path"] else e["message"])
        return redirect("home")
    if not request.session.session_key:
        # A session is made by the pages (home, lessons, scenarios); a post that brings none
        # is a script making a new "user" per request to escape the per-user limit.
        messages.error(request, ERR_NO_SESSION)
        return redirect("home")
    try:
        record, _ = async_to_sync(services.simulation_create)(
            scenario=scenario,
            seed=seed,
            owner_session=request.session.session_key,
            owner_ip=client_ip(request),
            mode=mode,
            guide=guide,
        )
    except services.LimitReached as e:
        limit_message(request, e)
        return redirect("home")
    except services.TooCostly as e:
        for reason in e.reasons:
            messages.error(request, reason)
        return redirect("home")
    return redirect("simulation_page", sim_id=record.id)


# A message with this tag is shown with a link to the My simulations page (templates/_messages.html)
MY_SIMULATIONS_TAG = "my-simulations"


def limit_message(request: HttpRequest, error: services.LimitReached) -> None:
    """A refusal for want of a live slot, as a message; a link to My simulations goes with it
    when stopping one of the user's own runs makes room."""
    messages.error(request, str(error), extra_tags=MY_SIMULATIONS_TAG if error.yours else "")


def _int_or_none(text: str | None) -> int | None:
    """A seed typed in a form: empty is none; anything but 0 .. 2**63 - 1 is a ValueError."""
    if not text or not text.strip():
        return None
    value = int(text.strip()[:25])
    if not 0 <= value <= MAX_SEED:
        raise ValueError(ERR_SEED)
    return value


def _record_or_404(sim_id: str) -> SimulationRecord | None:
    return SimulationRecord.objects.filter(pk=sim_id).first()


def simulation_page(request: HttpRequest, sim_id: str) -> HttpResponse:
    record = _record_or_404(sim_id)
    if record is None:
        return render(request, "404.html", {"message": f"No simulation {sim_id!r}."}, status=404)
    try:
        st = async_to_sync(services.simulation_state)(record=record)
    except services.NoRoom as e:
        owner = services.can_control(record, session_key=request.session.session_key, bearer=None)
        return render(
            request,
            "simulation_no_room.html",
            {"message": str(e), "name": record.name, "link": owner and e.yours},
            status=409,
        )
    except services.Unbuildable as e:
        return render(request, "404.html", {"message": str(e)}, status=409)
    # the page's first frame has the shape of the runner's frames
    initial = {
        "type": "frame",
        "seq": 0,
        "t": (st or {}).get("t", 0.0),
        "full": True,
        "state": st or {},
        "events": [],
        "events_seen": 0,
        "history": {},
    }
    if not request.session.session_key:
        request.session.save()  # a viewer's session is its vote in a guided lesson
    controls = services.can_control(record, session_key=request.session.session_key, bearer=None)
    guide = (st or {}).get("guide")
    return render(
        request,
        "compare.html" if record.mode == "compare" else "simulation.html",
        {
            "sim_id": record.id,
            "ws_path": f"/ws/simulations/{record.id}/",
            "initial_frame": initial,
            "scenario_name": record.name,
            "scenario_description": record.scenario.get("description", ""),
            "speeds": SPEEDS,
            "control_url": reverse("simulation_control", args=[record.id]),
            "api_url": reverse("api_simulation", args=[record.id]),
            "can_control": controls,
            "share_url": request.build_absolute_uri(),
            "topics": _topic_names(record.scenario),
            "guide": guide,
        },
    )


def _topic_names(scenario: Any) -> list[str]:
    """The scenario's topic names, for the broker controls (a stored scenario is valid)."""
    topics = scenario.get("topics", []) if isinstance(scenario, dict) else []
    return [t["name"] for t in topics if isinstance(t, dict) and isinstance(t.get("name"), str)]


@require_POST
def simulation_control(request: HttpRequest, sim_id: str) -> HttpResponse:
    """Every control on the page posts here; htmx gets a partial, a plain form a redirect."""
    record = _record_or_404(sim_id)
    if record is None:
        return _control_answer(
            request, sim_id, ok=False, message=f"No simulation {sim_id!r}.", status=404
        )
    if not services.can_control(record, session_key=request.session.session_key, bearer=None):
        return _control_answer(
            request, sim_id, ok=False, message=services.ERR_READ_ONLY, status=403
        )
    command = command_from_form(request.POST)
    reply = async_to_sync(services.simulation_command)(record=record, command=command)
    if reply.get("ok"):
        return _control_answer(request, sim_id, ok=True, message=_describe(command, reply))
    return _control_answer(request, sim_id, ok=False, message=str(reply.get("error")), status=400)


def _describe(command: dict[str, Any], reply: dict[str, Any] | None = None) -> str:
    """What a command did, in words: the runner's own sentence when it has one (a seek, an
    extend), else the command and its target."""
    result = (reply or {}).get("result")
    if isinstance(result, dict) and isinstance(result.get("message"), str):
        return str(result["message"])
    name = command.get("command", "")
    target = command.get("consumer") or command.get("producer") or ""
    if isinstance(target, dict):
        target = target.get("name", "")
    value = command.get("value")
    parts = [str(name), str(target), "" if value is None else f"= {value}"]
    return "Done: " + " ".join(p for p in parts if p)


def _control_answer(
    request: HttpRequest, sim_id: str, *, ok: bool, message: str, status: int = 200
) -> HttpResponse:
    if getattr(request, "htmx", False):
        # htmx swaps only 2xx answers by default: the message goes in the body either way
        return render(request, "_command_result.html", {"ok": ok, "message": message})
    (messages.success if ok else messages.error)(request, message)
    if status == 404:
        return redirect("home")
    return redirect("simulation_page", sim_id=sim_id)


# --- My simulations: the runs this browser owns ----------------------------------------------

ERR_NOT_YOURS = (
    "You have no simulation {sim_id!r}: it was deleted, or it was started in another browser "
    "(only the browser that started a simulation can stop or delete it)."
)
ERR_POST_ONLY = (
    "Stop and Delete are buttons on the My simulations page ({path}): they send a POST, and "
    "this address takes nothing else."
)
STOPPED = "Stopped \u201c{name}\u201d at t = {t}: it no longer holds one of your live slots."
ALREADY_STOPPED = "\u201c{name}\u201d had already stopped: nothing changed."
DELETED = (
    "Deleted \u201c{name}\u201d: it is gone from this list, and its page now answers "
    "\u201cnot found\u201d."
)
STATUS_WORDS = {
    "running": "live and running",
    "paused": "live, paused",
    "finished": "finished",
    "stopped": "stopped",
}
STOPPED_IDLE = "stopped after {idle} unused"


def status_words(run: services.RunSummary) -> str:
    """``live and running``; a stopped run says why, when it stopped for being idle."""
    if run.status == "stopped" and run.stop_reason == "idle":
        return STOPPED_IDLE.format(idle=span_text(runners.IDLE_SECONDS))
    return STATUS_WORDS[run.status]


KIND_WORDS = {"simulation": "simulation", "comparison": "comparison", "lesson": "lesson"}


def format_sim_time(seconds: float) -> str:
    """Simulated time for a reader: ``42.5 s``, ``3 min 05 s``, ``2 h 04 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def created_ago(when: datetime) -> str:
    """``just now``, ``5 minutes ago``, ``2 days ago``."""
    if timezone.now() - when < timedelta(minutes=1):
        return "just now"
    return f"{timesince(when, depth=1)} ago"


UNTITLED_RUN = "Untitled simulation"


def run_title(record: SimulationRecord) -> str:
    """What the list calls a run: its lesson's title, else its scenario's name."""
    return services.lesson_title(record) or record.name or UNTITLED_RUN


def _scenario_line(run: services.RunSummary) -> str:
    """Under a lesson's title, its scenario's name, when that says something the title does
    not ("Lesson 2: Temporal decoupling" runs "Lesson: the Email service restarts at 3 AM")."""
    if not run.lesson or not run.name:
        return ""
    bare = run.name.removeprefix("Lesson:").strip()
    return "" if run.lesson.casefold().endswith(bare.casefold()) else capfirst(bare)


def _session_key(request: HttpRequest) -> str:
    return request.session.session_key or ""


def my_simulations(request: HttpRequest) -> HttpResponse:
    """``GET /simulations/mine/``: every simulation this browser started, with Stop and Delete."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    if not request.session.session_key:
        request.session.save()  # the forms it links to create simulations owned by this session
    return _render_mine(request)


def _render_mine(
    request: HttpRequest, *, outcome: str = "", ok: bool = True, status: int = 200
) -> HttpResponse:
    key = _session_key(request)
    runs = async_to_sync(services.simulations_of)(owner_session=key)
    context = {
        "runs": [
            {
                "id": run.id,
                "name": run.lesson or run.name or UNTITLED_RUN,
                "scenario": _scenario_line(run),
                "kind": KIND_WORDS[run.kind],
                "sim_time": format_sim_time(run.sim_time),
                "status": run.status,
                "status_words": status_words(run),
                "live": run.live,
                "created": run.created,
                "created_ago": created_ago(run.created),
                "url": reverse("simulation_page", args=[run.id]),
                "stop_url": reverse("simulation_stop", args=[run.id]),
                "delete_url": reverse("simulation_delete", args=[run.id]),
            }
            for run in runs
        ],
        "live_count": sum(run.live for run in runs),
        "max_live": services.MAX_LIVE_PER_OWNER,
        "max_listed": services.MAX_LISTED,
        "outcome": outcome,
        "ok": ok,
    }
    template = "_my_simulations.html" if getattr(request, "htmx", False) else "my_simulations.html"
    return render(request, template, context, status=status)


async def _own_record(request: HttpRequest, sim_id: str) -> SimulationRecord | None:
    """The simulation, if this browser started it; None for an unknown id and for someone
    else's run alike (the answer must not tell whether another user's run exists)."""
    key = _session_key(request)
    if not key:
        return None
    return await SimulationRecord.objects.filter(pk=sim_id, owner_session=key).afirst()


def _post_only(request: HttpRequest) -> HttpResponse | None:
    if request.method == "POST":
        return None
    return HttpResponseNotAllowed(
        ["POST"],
        ERR_POST_ONLY.format(path=reverse("my_simulations")),
        content_type="text/plain; charset=utf-8",
    )


def _mine_answer(request: HttpRequest, message: str, *, ok: bool, status: int) -> HttpResponse:
    """After Stop or Delete: htmx gets the list again with the sentence; a plain form is
    redirected to the page (which shows the sentence), an error is answered in place."""
    if getattr(request, "htmx", False) or not ok:
        return _render_mine(request, outcome=message, ok=ok, status=status)
    messages.success(request, message)
    return redirect("my_simulations")


# Stop and Delete are async views: they wait for the runner, which lives on the event loop.


async def simulation_stop(request: HttpRequest, sim_id: str) -> HttpResponse:
    """``POST /simulations/<id>/stop``: end the runner and free the live slot at once."""
    refused = _post_only(request)
    if refused is not None:
        return refused
    record = await _own_record(request, sim_id)
    if record is None:
        message = ERR_NOT_YOURS.format(sim_id=sim_id)
        return await sync_to_async(_mine_answer)(request, message, ok=False, status=404)
    name = run_title(record)
    if not await services.simulation_stop(record=record):
        message = ALREADY_STOPPED.format(name=name)
    else:
        await record.arefresh_from_db(fields=["sim_time"])
        message = STOPPED.format(name=name, t=format_sim_time(record.sim_time))
    return await sync_to_async(_mine_answer)(request, message, ok=True, status=200)


async def simulation_delete(request: HttpRequest, sim_id: str) -> HttpResponse:
    """``POST /simulations/<id>/delete``: stop it if live, then delete it (its page is a 404)."""
    refused = _post_only(request)
    if refused is not None:
        return refused
    record = await _own_record(request, sim_id)
    if record is None:
        message = ERR_NOT_YOURS.format(sim_id=sim_id)
        return await sync_to_async(_mine_answer)(request, message, ok=False, status=404)
    await services.simulation_delete(record=record)
    message = DELETED.format(name=run_title(record))
    return await sync_to_async(_mine_answer)(request, message, ok=True, status=200)


# --- JSON API --------------------------------------------------------------------------------


def _json_body(request: HttpRequest) -> tuple[Any, JsonResponse | None]:
    """The request's JSON body, or the error to answer with.

    Only ``application/json`` from this site's pages (or a script, which sends no Origin): a
    cross-site form or ``text/plain`` POST is a "simple request" a browser sends without asking,
    so without these checks any website could create simulations from its visitors' browsers.
    """
    origin = request.headers.get("Origin")
    if not origin_allowed(request):
        return None, _api_error(ERR_ORIGIN.format(origin=origin), 403)
    content_type = request.content_type or ""
    if content_type.lower() != "application/json":
        return None, _api_error(ERR_CONTENT_TYPE, 415)
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY:
        return None, _api_error(ERR_BODY_TOO_LARGE, 413)
    try:
        body = request.body
    except RequestDataTooBig:
        return None, _api_error(ERR_BODY_TOO_LARGE, 413)
    if len(body) > MAX_BODY:
        return None, _api_error(ERR_BODY_TOO_LARGE, 413)
    try:
        return json.loads(body or b"null"), None
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None, _api_error(ERR_BAD_JSON, 400)


def _api_error(message: str, status: int, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def _bearer(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


@csrf_exempt
@require_http_methods(["POST"])
async def api_simulations(request: HttpRequest) -> JsonResponse:
    """``POST /api/simulations`` with a scenario (JSON) -> 201 {id, url, ws, control_token}."""
    doc, error = _json_body(request)
    if error is not None:
        return error
    if not isinstance(doc, dict):
        return JsonResponse({"errors": [{"path": "", "message": ERR_NOT_OBJECT}]}, status=400)
    seed = doc.pop("seed_override", None) if isinstance(doc, dict) else None
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED
    ):
        bad_seed = {"path": "seed_override", "message": ERR_SEED}
        return JsonResponse({"errors": [bad_seed]}, status=400)
    scenario, errors = await sync_to_async(services.parse_scenario_or_errors)(doc)
    if scenario is None:
        return JsonResponse({"errors": errors}, status=400)
    mode = request.GET.get("mode", "live")
    if mode not in ("live", "compare"):
        return JsonResponse(
            {"errors": [{"path": "", "message": "mode must be live or compare"}]}, status=400
        )
    if mode == "compare" and not scenario.chain:
        return JsonResponse({"errors": [{"path": "chain", "message": ERR_NO_CHAIN}]}, status=400)
    try:
        record, token = await services.simulation_create(
            scenario=scenario,
            seed=seed,
            mode=mode,
            owner_ip=client_ip(request),
        )
    except services.LimitReached as e:
        return JsonResponse({"errors": [{"path": "", "message": str(e)}]}, status=429)
    except services.TooCostly as e:
        errors = [{"path": "", "message": reason} for reason in e.reasons]
        return JsonResponse({"errors": errors}, status=400)
    return JsonResponse(
        {
            "id": record.id,
            "url": request.build_absolute_uri(reverse("simulation_page", args=[record.id])),
            "ws": f"/ws/simulations/{record.id}/",
            "control_token": token,
        },
        status=201,
    )


# The API's controls go by the control token alone (no cookie counts there, so no other site's
# page can use them from its visitors' browsers).
ERR_TOKEN_HINT = " (send Authorization: Bearer <control_token>)"


async def _api_controlled(
    request: HttpRequest, sim_id: str
) -> tuple[SimulationRecord | None, JsonResponse | None]:
    record = await services.simulation_get(sim_id=sim_id)
    if record is None:
        return None, _api_error(services.ERR_UNKNOWN_SIMULATION.format(sim_id=sim_id), 404)
    if not services.can_control(record, session_key=None, bearer=_bearer(request)):
        return None, _api_error(services.ERR_READ_ONLY + ERR_TOKEN_HINT, 403)
    return record, None


@csrf_exempt
@require_http_methods(["POST"])
async def api_stop(request: HttpRequest, sim_id: str) -> JsonResponse:
    """``POST /api/simulations/<id>/stop`` -> 200 {ok, id, stopped}: its runner ends and its live
    slot is free at once (``stopped`` false: it had stopped already). Reading it again rebuilds
    it, paused where it stopped."""
    record, error = await _api_controlled(request, sim_id)
    if error is not None:
        return error
    assert record is not None
    stopped = await services.simulation_stop(record=record)
    return JsonResponse({"ok": True, "id": record.id, "stopped": stopped})


@csrf_exempt
@require_http_methods(["GET", "DELETE"])
async def api_simulation(request: HttpRequest, sim_id: str) -> JsonResponse:
    """``GET /api/simulations/<id>`` -> the current snapshot (a frame's ``state``).
    ``DELETE`` (with the control token) stops it and deletes it -> 200 {ok, id, deleted}."""
    if request.method == "DELETE":
        record, error = await _api_controlled(request, sim_id)
        if error is not None:
            return error
        assert record is not None
        await services.simulation_delete(record=record)
        return JsonResponse({"ok": True, "id": record.id, "deleted": True})
    record = await services.simulation_get(sim_id=sim_id)
    if record is None:
        return _api_error(services.ERR_UNKNOWN_SIMULATION.format(sim_id=sim_id), 404)
    try:
        st = await services.simulation_state(record=record)
    except services.Unbuildable as e:
        return _api_error(str(e), 409)
    if st is None:
        return _api_error(services.ERR_NO_RUNNER, 503)
    return JsonResponse(st)


@require_http_methods(["GET"])
async def api_records(request: HttpRequest, sim_id: str) -> JsonResponse:
    """``GET /api/simulations/<id>/records?topic=orders.DLT&partition=0&offset=0&limit=20``:
    a topic's log read from an offset, as a consumer would fetch it (a dead-letter topic's
    records come with their ``kafka_dlt-*`` headers)."""
    return await _read(request, sim_id, "sim.records", ("topic", "partition", "offset", "limit"))


async def _read(
    request: HttpRequest, sim_id: str, kind: str, fields: tuple[str, ...]
) -> JsonResponse:
    """A read-only question to the runner, its arguments from the query string."""
    record = await services.simulation_get(sim_id=sim_id)
    if record is None:
        return _api_error(services.ERR_UNKNOWN_SIMULATION.format(sim_id=sim_id), 404)
    query = {k: request.GET[k] for k in fields if k in request.GET}
    reply = await services.simulation_read(record=record, message={"type": kind, **query})
    if reply is None:
        return _api_error(services.ERR_NO_RUNNER, 503)
    if not reply.get("ok"):
        return _api_error(str(reply.get("error")), 400)
    return JsonResponse(reply["result"])


@require_http_methods(["GET"])
async def api_replay(request: HttpRequest, sim_id: str) -> JsonResponse:
    """``GET /api/simulations/<id>/replay?topic=order-events&key=ord-10&upto=5``: one key's
    state rebuilt by replaying its events from the log up to an offset (event sourcing), with
    every event of the key still in the log."""
    return await _read(request, sim_id, "sim.replay", ("topic", "key", "upto"))


@csrf_exempt
@require_http_methods(["POST"])
async def api_commands(request: HttpRequest, sim_id: str) -> JsonResponse:
    """``POST /api/simulations/<id>/commands`` {"command": ...} -> 200 with the new snapshot."""
    record = await services.simulation_get(sim_id=sim_id)
    if record is None:
        return _api_error(services.ERR_UNKNOWN_SIMULATION.format(sim_id=sim_id), 404)
    if not services.can_control(record, session_key=None, bearer=_bearer(request)):
        return _api_error(services.ERR_READ_ONLY + ERR_TOKEN_HINT, 403)
    doc, error = _json_body(request)
    if error is not None:
        return error
    if not isinstance(doc, dict):
        return _api_error(ERR_NOT_OBJECT, 400)
    reply = await services.simulation_command(record=record, command=doc)
    if not reply.get("ok"):
        status = 503 if reply.get("error") == services.ERR_NO_RUNNER else 400
        if reply.get("unbuildable"):
            status = 409
        return _api_error(str(reply.get("error")), status)
    return JsonResponse(
        {"ok": True, "result": reply.get("result") or {}, "state": reply.get("state")}
    )


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "404.html", {"message": "There is nothing at this address."}, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    return render(request, "500.html", status=500)
