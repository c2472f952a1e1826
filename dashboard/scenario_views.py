"""Saved scenarios: write, validate, fork, export, import and share scenario files.

Plain HTML forms. The browser session that created a scenario owns it and is the only one that
may change it; anyone with its link may view it read-only, fork it, export it, or start a
simulation from it. Invalid text may be saved as a draft, which cannot be started.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import PurePath

import yaml
from asgiref.sync import async_to_sync
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from simulator import Scenario, ScenarioError, parse_scenario
from simulator.scenario import compose_yaml, load_text

from . import services
from .clients import client_ip
from .models import SavedScenario
from .views import limit_message, preset_list, preset_text

MAX_TEXT_BYTES = 256 * 1024
MAX_PER_SESSION = 50
MAX_NAME = 200
IMPORT_SUFFIXES = (".yaml", ".yml", ".json")
UNTITLED = "Untitled scenario"

ERR_TOO_LARGE = f"the scenario is larger than {MAX_TEXT_BYTES // 1024} KB: make it smaller"
ERR_TOO_MANY = (
    f"you already have {MAX_PER_SESSION} saved scenarios, the most one browser may keep: "
    "delete one you no longer need"
)
ERR_NOT_OWNER = (
    "only the browser that created this scenario can change it: fork it to get your own copy"
)
ERR_UNKNOWN = "No saved scenario {scenario_id!r}."
ERR_NO_PRESET = "unknown preset {slug!r}"
ERR_NO_FILE = "choose a file to import"
ERR_BAD_SUFFIX = "choose a .yaml, .yml or .json file"
ERR_NOT_UTF8 = "the file is not UTF-8 text"
ERR_CANNOT_START = "this scenario has problems (shown beside their lines): fix them to start it"
ERR_TOO_DEEP = "the scenario is nested too deeply"

# What "New blank" opens: the smallest system worth editing, valid as it stands.
BLANK_TEXT = """\
name: My scenario
description: What this system shows.
seed: 1
duration: 120
topics:
  - {name: orders, partitions: 3}
producers:
  - {name: checkout, topic: orders, event: OrderPlaced, rate: 20}
consumers:
  - name: email
    topics: [orders]
    processing: {dist: exponential, mean_ms: 20}
"""


# --- validation, placed on lines ---------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One validation error and the (1-based) line of the text it concerns."""

    line: int
    path: str
    message: str

    @property
    def text(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


_SYNTAX_AT = re.compile(r"\bat line (\d+), column \d+")
_INDEX = re.compile(r"\[(\d+)\]")


def validate_text(text: str) -> tuple[Scenario | None, list[Problem]]:
    """Parse the text as a scenario; on failure, every problem with the line it concerns."""
    try:
        return parse_scenario(text), []
    except ScenarioError as e:
        return None, place_problems(text, e.errors)
    except RecursionError:
        return None, [Problem(1, "", ERR_TOO_DEEP)]


def place_problems(text: str, errors: list[tuple[str, str]]) -> list[Problem]:
    """Give each ``(path, message)`` the line of the field it names, sorted by line.

    Syntax errors carry their own "at line L, column C"; a field path is looked up in PyYAML's
    node tree (JSON is YAML, so this works for both), falling back to the nearest ancestor
    that exists, then line 1.
    """
    root = _compose(text)
    last = max(1, len(text.split("\n")))
    out = []
    for path, message in errors:
        at = None if path else _SYNTAX_AT.search(message)
        line = int(at.group(1)) if at else line_of_path(root, path)
        out.append(Problem(min(max(line, 1), last), path, message))
    return sorted(out, key=lambda p: p.line)


def _compose(text: str) -> yaml.Node | None:
    # guarded as the scenario's own parse is: a file that expands too far has no lines to find
    try:
        return compose_yaml(text)
    except (yaml.YAMLError, ScenarioError, RecursionError):
        return None


def line_of_path(root: yaml.Node | None, path: str) -> int:
    """The 1-based line of ``consumers[1].processing.mean_ms`` (its key) in the node tree."""
    if root is None:
        return 1
    node: yaml.Node = root
    line = root.start_mark.line + 1
    rest = path
    while rest:
        if isinstance(node, yaml.SequenceNode) and (m := _INDEX.match(rest)):
            index = int(m.group(1))
            if index >= len(node.value):
                break
            node = node.value[index]
            line = node.start_mark.line + 1
            rest = rest[m.end() :]
        elif isinstance(node, yaml.MappingNode):
            rest = rest.removeprefix(".")
            # the longest key that the path continues from: field names may contain dots
            matches = [
                (k, v)
                for k, v in node.value
                if isinstance(k, yaml.ScalarNode)
                and isinstance(k.value, str)
                and k.value
                and (rest == k.value or rest.startswith((k.value + ".", k.value + "[")))
            ]
            if not matches:
                break
            key, node = max(matches, key=lambda kv: len(kv[0].value))
            line = key.start_mark.line + 1
            rest = rest[len(key.value) :]
        else:
            break
    return line


def detect_format(text: str) -> str:
    # the same test load_text uses to choose the JSON parser
    return "json" if text.lstrip().startswith(("{", "[")) else "yaml"


# --- one name: the scenario's name is its text's ``name:`` ----------------------------------


def _name_pair(root: yaml.Node | None) -> tuple[yaml.Node, yaml.Node] | None:
    """The top-level ``name`` key and its value (the last one: YAML's loader keeps the last)."""
    if not isinstance(root, yaml.MappingNode):
        return None
    pairs = [(k, v) for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.value == "name"]
    return pairs[-1] if pairs else None


def text_name(text: str) -> str | None:
    """The text's top-level ``name:`` (None: it has none, or the text does not parse)."""
    pair = _name_pair(_compose(text))
    if pair is None or not isinstance(pair[1], yaml.ScalarNode):
        return None
    return str(pair[1].value)


def _scalar(name: str, *, flow: bool) -> str:
    """``name`` as a scalar the text can hold: plain YAML when that reads back the same, else
    double-quoted (a JSON string is a YAML double-quoted scalar too)."""
    if not flow:
        try:
            if yaml.safe_load(f"name: {name}\n") == {"name": name}:
                return name
        except yaml.YAMLError:
            pass
    return json.dumps(name, ensure_ascii=False)


def _same_but_name(before: str, after: str, name: str) -> bool:
    """``after`` is ``before`` with the name ``name`` and nothing else changed."""
    try:
        old, new = load_text(before), load_text(after)
    except (ScenarioError, RecursionError):
        return False
    if not isinstance(old, dict) or not isinstance(new, dict) or new.get("name") != name:
        return False
    old.pop("name", None)
    new.pop("name", None)
    return bool(old == new)


def with_name(text: str, name: str) -> str | None:
    """The text with its top-level ``name:`` set to ``name`` (added when it has none), every
    other line as typed; the text itself when it already says so. None: the text does not
    parse (or its name is not a plain value), so it cannot be changed safely."""
    if text_name(text) == name:
        return text
    root = _compose(text)
    if not isinstance(root, yaml.MappingNode):
        return None
    flow = bool(root.flow_style)
    scalar = _scalar(name, flow=flow)
    pair = _name_pair(root)
    if pair is not None:
        value = pair[1]
        if not isinstance(value, yaml.ScalarNode):
            return None
        start, end = value.start_mark.index, value.end_mark.index
        # a block scalar (name: >) ends with its line break: keep it
        tail = "\n" if text[start:end].endswith("\n") else ""
        changed = text[:start] + scalar + tail + text[end:]
    elif flow:
        at = root.start_mark.index + 1  # just after the "{"
        if not root.value:
            changed = f'{text[:at]}"name": {scalar}{text[at:]}'
        else:
            first = root.value[0][0].start_mark
            if first.line == root.start_mark.line:
                changed = f'{text[:at]}"name": {scalar}, {text[at:]}'
            else:  # keys on their own lines: a line of its own, indented as they are
                indent = " " * first.column
                changed = f'{text[:at]}\n{indent}"name": {scalar},{text[at:]}'
    else:
        first = root.start_mark  # the first key: the new line goes above it, as indented
        at = first.index - first.column
        changed = f"{text[:at]}{' ' * first.column}name: {scalar}\n{text[at:]}"
    return changed if _same_but_name(text, changed, name) else None


# --- helpers ----------------------------------------------------------------------------


def _normalize(text: str) -> str:
    # browsers send a textarea's lines with CRLF
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _too_large(text: str) -> bool:
    return len(text.encode("utf-8")) > MAX_TEXT_BYTES


def _clean_name(name: str) -> str:
    return " ".join(name.split())[:MAX_NAME] or UNTITLED


def _session_key(request: HttpRequest) -> str:
    if not request.session.session_key:
        request.session.save()
    return request.session.session_key or ""


def _owns(request: HttpRequest, saved: SavedScenario) -> bool:
    key = request.session.session_key
    return bool(key) and key == saved.owner_session


def _get(scenario_id: str) -> SavedScenario | None:
    return SavedScenario.objects.filter(pk=scenario_id).select_related("forked_from").first()


def _not_found(request: HttpRequest, scenario_id: str) -> HttpResponse:
    return render(
        request, "404.html", {"message": ERR_UNKNOWN.format(scenario_id=scenario_id)}, status=404
    )


def _create(
    request: HttpRequest, *, name: str, text: str, forked_from: SavedScenario | None = None
) -> SavedScenario | None:
    """Keep a new scenario for this session; None, with a message, when a limit says no."""
    if _too_large(text):
        messages.error(request, ERR_TOO_LARGE)
        return None
    owner = _session_key(request)
    if SavedScenario.objects.filter(owner_session=owner).count() >= MAX_PER_SESSION:
        messages.error(request, ERR_TOO_MANY)
        return None
    name = _clean_name(name)
    text = with_name(text, name) or text  # one name: the text says it too, where it can
    scenario, _ = validate_text(text)
    return SavedScenario.objects.create(
        name=name,
        text=text,
        format=detect_format(text),
        valid=scenario is not None,
        owner_session=owner,
        forked_from=forked_from,
    )


# --- pages ------------------------------------------------------------------------------


@require_GET
def scenario_list(request: HttpRequest) -> HttpResponse:
    """This browser's scenarios, and the ways to make a new one."""
    key = request.session.session_key
    mine = SavedScenario.objects.filter(owner_session=key) if key else SavedScenario.objects.none()
    return render(
        request,
        "scenarios/list.html",
        {
            "scenarios": mine,
            "presets": preset_list(),
            "max_per_session": MAX_PER_SESSION,
            "max_kb": MAX_TEXT_BYTES // 1024,
        },
    )


@require_POST
def scenario_new(request: HttpRequest) -> HttpResponse:
    """A new scenario from a preset (``preset=<slug>``), or the blank one."""
    slug = request.POST.get("preset", "")
    if slug:
        text = preset_text(slug)
        if text is None:
            messages.error(request, ERR_NO_PRESET.format(slug=slug))
            return redirect("scenario_list")
        scenario, _ = validate_text(text)
        name = scenario.name if scenario is not None and scenario.name else slug
    else:
        text = BLANK_TEXT
        name = text_name(text) or UNTITLED
    saved = _create(request, name=name, text=text)
    if saved is None:
        return redirect("scenario_list")
    return redirect("scenario_editor", scenario_id=saved.id)


@require_POST
def scenario_import(request: HttpRequest) -> HttpResponse:
    """Keep an uploaded ``.yaml``/``.yml``/``.json`` file as a new scenario."""
    upload = request.FILES.get("file")
    if upload is None:
        messages.error(request, ERR_NO_FILE)
        return redirect("scenario_list")
    filename = PurePath(upload.name or "").name
    if not filename.lower().endswith(IMPORT_SUFFIXES):
        messages.error(request, ERR_BAD_SUFFIX)
        return redirect("scenario_list")
    if (upload.size or 0) > MAX_TEXT_BYTES:
        messages.error(request, ERR_TOO_LARGE)
        return redirect("scenario_list")
    try:
        text = _normalize(upload.read(MAX_TEXT_BYTES + 1).decode("utf-8-sig"))
    except UnicodeDecodeError:
        messages.error(request, ERR_NOT_UTF8)
        return redirect("scenario_list")
    name = (text_name(text) or "").strip() or PurePath(filename).stem
    saved = _create(request, name=name, text=text)
    if saved is None:
        return redirect("scenario_list")
    messages.success(request, f"Imported {filename}.")
    return redirect("scenario_editor", scenario_id=saved.id)


@require_http_methods(["GET", "POST"])
def scenario_editor(request: HttpRequest, scenario_id: str) -> HttpResponse:
    """View (anyone with the link) or edit (the owner): ``action=validate`` or ``save``."""
    saved = _get(scenario_id)
    if saved is None:
        return _not_found(request, scenario_id)
    if request.method == "GET":
        return _render_editor(request, saved, name=saved.name, text=saved.text)
    if not _owns(request, saved):
        return _render_editor(
            request, saved, name=saved.name, text=saved.text, error=ERR_NOT_OWNER, status=403
        )
    name = _clean_name(request.POST.get("name", ""))
    text = _normalize(request.POST.get("text", ""))
    if _too_large(text):
        return _render_editor(request, saved, name=name, text=text, error=ERR_TOO_LARGE, status=400)
    if request.POST.get("action") == "validate":
        return _render_editor(request, saved, name=name, text=text, checked=True)
    name, text, renamed = one_name(saved=saved, name=name, text=text)
    scenario, problems = validate_text(text)
    saved.name, saved.text = name, text
    saved.format, saved.valid = detect_format(text), scenario is not None
    saved.save()
    if scenario is None:
        n = len(problems)
        messages.warning(
            request,
            f"Saved as a draft with {n} problem{'s' if n != 1 else ''}: "
            "it can be started once they are fixed.",
        )
    else:
        messages.success(request, "Saved.")
    if renamed:
        messages.info(request, renamed)
    return redirect("scenario_editor", scenario_id=saved.id)


RENAMED = "Renamed to \u201c{name}\u201d: the text's name: says so too."
RENAMED_FROM_TEXT = "Renamed to \u201c{name}\u201d, as the text's name: now says."
ERR_NAME_NOT_IN_TEXT = (
    "Renamed to \u201c{name}\u201d, but the text's name: could not be changed to match: the "
    "text does not parse as a mapping with a plain name. Fix it, then Save again."
)


def one_name(*, saved: SavedScenario, name: str, text: str) -> tuple[str, str, str]:
    """A saved scenario has one name, its text's ``name:``. Renamed in the Name field, the text
    follows; with a new ``name:`` typed in the text (and the field left alone), the scenario
    takes it. Returns the name, the text, and a sentence saying what was renamed ("" if
    nothing was)."""
    in_text = (text_name(text) or "").strip()
    # the text's name: counts as changed against one the saved text said (a saved draft that
    # did not parse said none: then the Name field is the name)
    was = text_name(saved.text)
    if name == saved.name and in_text and was is not None and text_name(text) != was:
        name = _clean_name(in_text)  # the text's name: changed, and the Name field did not
        synced = with_name(text, name)
        if name == saved.name:
            return name, synced or text, ""
        return name, synced or text, RENAMED_FROM_TEXT.format(name=name)
    synced = with_name(text, name)
    if name == saved.name:
        return name, synced or text, ""
    if synced is None:
        return name, text, ERR_NAME_NOT_IN_TEXT.format(name=name)
    return name, synced, RENAMED.format(name=name)


def _render_editor(
    request: HttpRequest,
    saved: SavedScenario,
    *,
    name: str,
    text: str,
    error: str = "",
    checked: bool = False,
    status: int = 200,
) -> HttpResponse:
    scenario, problems = (None, []) if _too_large(text) else validate_text(text)
    by_line: dict[int, list[Problem]] = {}
    for p in problems:
        by_line.setdefault(p.line, []).append(p)
    rows = [
        {"number": n, "problems": by_line.get(n, [])} for n in range(1, len(text.split("\n")) + 1)
    ]
    return render(
        request,
        "scenarios/editor.html",
        {
            "saved": saved,
            "name": name,
            "text": text,
            "rows": rows,
            "problems": problems,
            "valid": scenario is not None,
            "is_compare": scenario is not None and bool(scenario.chain),
            "owner": _owns(request, saved),
            "unsaved": text != saved.text or name != saved.name,
            "checked": checked,
            "error": error,
            "share_url": request.build_absolute_uri(reverse("scenario_editor", args=[saved.id])),
        },
        status=status,
    )


@require_POST
def scenario_fork(request: HttpRequest, scenario_id: str) -> HttpResponse:
    """A copy owned by this browser, named "<name> (fork)"."""
    saved = _get(scenario_id)
    if saved is None:
        return _not_found(request, scenario_id)
    copy = _create(request, name=f"{saved.name} (fork)", text=saved.text, forked_from=saved)
    if copy is None:
        return redirect("scenario_editor", scenario_id=saved.id)
    messages.success(request, "Forked: this copy is yours to edit.")
    return redirect("scenario_editor", scenario_id=copy.id)


@require_GET
def scenario_export(request: HttpRequest, scenario_id: str) -> HttpResponse:
    """The text as a file download: ``<slug>.yaml`` or ``<slug>.json``."""
    saved = _get(scenario_id)
    if saved is None:
        return _not_found(request, scenario_id)
    ext = "json" if saved.format == "json" else "yaml"
    response = HttpResponse(saved.text, content_type=f"application/{ext}; charset=utf-8")
    # slugify leaves only [a-z0-9_-]: nothing in the name needs quoting
    filename = f"{slugify(saved.name) or 'scenario'}.{ext}"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_POST
def scenario_start(request: HttpRequest, scenario_id: str) -> HttpResponse:
    """Start a live simulation (a comparison, if the scenario has a ``chain``) from it."""
    saved = _get(scenario_id)
    if saved is None:
        return _not_found(request, scenario_id)
    scenario, _ = validate_text(saved.text)
    if scenario is None:
        messages.error(request, ERR_CANNOT_START)
        return redirect("scenario_editor", scenario_id=saved.id)
    try:
        record, _token = async_to_sync(services.simulation_create)(
            scenario=scenario,
            owner_session=_session_key(request),
            owner_ip=client_ip(request),
            mode="compare" if scenario.chain else "live",
        )
    except services.LimitReached as e:
        limit_message(request, e)
        return redirect("scenario_editor", scenario_id=saved.id)
    except services.TooCostly as e:
        messages.error(request, str(e))
        return redirect("scenario_editor", scenario_id=saved.id)
    return redirect("simulation_page", sim_id=record.id)


@require_POST
def scenario_delete(request: HttpRequest, scenario_id: str) -> HttpResponse:
    saved = _get(scenario_id)
    if saved is None:
        return _not_found(request, scenario_id)
    if not _owns(request, saved):
        return _render_editor(
            request, saved, name=saved.name, text=saved.text, error=ERR_NOT_OWNER, status=403
        )
    saved.delete()
    messages.success(request, f"Deleted {saved.name}.")
    return redirect("scenario_list")
