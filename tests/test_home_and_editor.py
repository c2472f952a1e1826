"""The home page's order and what each of its cards opens; a saved scenario's one name (the
Name field and the text's ``name:`` are the same thing)."""

from __future__ import annotations

import html
import json
import re

import pytest
import yaml
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import AsyncClient, Client

from dashboard import scenario_views
from dashboard.models import SavedScenario, SimulationRecord
from dashboard.views import preset_list, preset_text
from simulator.lessons import LESSONS
from tests.web_helpers import stop_all_runners

CARD = re.compile(
    r'<li class="card" id="preset-(?P<slug>[\w-]+)">\s*<h3 class="card__title">(?P<name>[^<]*)</h3>'
    r'.*?<form method="post" action="(?P<action>[^"]+)"',
    re.S,
)


def home_page() -> str:
    r = Client().get("/")
    assert r.status_code == 200
    return r.content.decode()


def cards(page: str) -> dict[str, tuple[str, str]]:
    """slug -> (the card's title, where its form posts), in page order."""
    found = {m["slug"]: (html.unescape(m["name"]), m["action"]) for m in CARD.finditer(page)}
    assert len(found) == len(CARD.findall(page)), "a preset has two cards"
    return found


# --- the home page ------------------------------------------------------------------------


@pytest.mark.django_db
def test_home_leads_with_the_lessons_then_the_comparison_then_the_presets() -> None:
    page = home_page()
    lessons = page.index('id="lessons-heading"')
    comparison = page.index('id="compare-heading"')
    presets = page.index('id="presets-heading"')

    assert lessons < comparison < presets
    # the lessons in their teaching order, first of all
    links = re.findall(r'<li id="lesson-([\w-]+)"><a href="/lessons/\1/">', page)
    assert links == [item.slug for item in LESSONS]
    assert page.index(f'id="lesson-{LESSONS[0].slug}"') < comparison
    # the comparison's card sits in its section, before the presets' section starts
    assert comparison < page.index('id="preset-sync-vs-events"') < presets


@pytest.mark.django_db
def test_each_card_opens_the_page_its_description_promises() -> None:
    by_slug = {p["slug"]: p for p in preset_list()}

    found = cards(home_page())

    assert found, "no preset cards"
    for slug, (_name, action) in found.items():
        # a preset with a synchronous chain is the side-by-side comparison; the rest are the
        # event-flow dashboard
        expected = "/compare/" if by_slug[slug]["compare"] else "/simulations/"
        assert action == expected, slug
    assert found["sync-vs-events"] == ("Synchronous call chain vs event flow", "/compare/")


@pytest.mark.django_db(transaction=True)
async def test_the_comparison_card_opens_the_comparison_page() -> None:
    client = AsyncClient()
    page = (await client.get("/")).content.decode()
    _name, action = cards(page)["sync-vs-events"]
    try:
        r = await client.post(action, {"preset": "sync-vs-events"})
        record = await SimulationRecord.objects.aget()
        assert r["Location"] == f"/simulations/{record.id}/"
        assert record.mode == "compare"
        opened = (await client.get(r["Location"])).content.decode()
        assert 'id="compare-root"' in opened and 'id="sim-root"' not in opened
        # and an event-flow preset card opens the event-flow dashboard
        _name, action = cards(page)["email-outage"]
        r = await client.post(action, {"preset": "email-outage"})
        assert 'id="sim-root"' in (await client.get(r["Location"])).content.decode()
    finally:
        await stop_all_runners()


@pytest.mark.django_db
def test_each_thing_appears_once_on_the_home_page() -> None:
    page = home_page()
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())

    # the outage once: the preset; its lesson is "Temporal decoupling", not a second card
    assert text.lower().count("email service restarts at 3 am") == 1
    assert text.count("Synchronous call chain vs event flow") == 1
    titles = [name for name, _action in cards(page).values()]
    assert len(titles) == len(set(titles))
    assert not any(title.startswith("Lesson:") for title in titles)
    # every preset is on the page once: as a card, or through the lesson it belongs to
    lessons_presets = {item.preset for item in LESSONS}
    for preset in preset_list():
        on_card = f'id="preset-{preset["slug"]}"' in page
        assert on_card or preset["slug"] in lessons_presets, preset["slug"]
        assert page.count(f'id="preset-{preset["slug"]}"') <= 1
    for item in LESSONS:
        assert page.count(f'href="/lessons/{item.slug}/"') == 1


# --- a saved scenario has one name ---------------------------------------------------------


BASIC = preset_text("basic") or ""


def new_scenario(client: Client, preset: str = "basic") -> SavedScenario:
    r = client.post("/scenarios/new", {"preset": preset})
    assert r.status_code == 302
    return SavedScenario.objects.get(pk=r["Location"].rstrip("/").split("/")[-1])


def save(client: Client, saved: SavedScenario, *, name: str, text: str) -> str:
    r = client.post(
        f"/scenarios/{saved.id}/", {"name": name, "text": text, "action": "save"}, follow=True
    )
    assert r.status_code == 200
    saved.refresh_from_db()
    return html.unescape(r.content.decode())


def loaded_name(text: str) -> object:
    return yaml.safe_load(text)["name"]


@pytest.mark.django_db
def test_renaming_a_saved_scenario_renames_its_text_and_nothing_else() -> None:
    client = Client()
    saved = new_scenario(client)

    page = save(client, saved, name="Orders at night", text=saved.text)

    assert saved.name == "Orders at night" == loaded_name(saved.text)
    before, after = BASIC.split("\n"), saved.text.split("\n")
    assert [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b] == [0]
    assert after[0] == "name: Orders at night"
    assert "Renamed to \u201cOrders at night\u201d" in page
    assert "name: Orders at night" in page  # the editor shows the renamed text
    assert client.get(f"/scenarios/{saved.id}/export").content.decode() == saved.text


@pytest.mark.django_db
def test_a_new_name_typed_in_the_text_renames_the_scenario() -> None:
    client = Client()
    saved = new_scenario(client)
    text = BASIC.replace("name: One producer, one consumer", "name: Night shift", 1)

    page = save(client, saved, name="One producer, one consumer", text=text)

    assert (saved.name, saved.text) == ("Night shift", text)
    assert "Renamed to \u201cNight shift\u201d, as the text's name: now says." in page
    assert "Night shift" in client.get("/scenarios/").content.decode()


@pytest.mark.django_db
def test_json_text_is_renamed_as_json() -> None:
    client = Client()
    saved = new_scenario(client)
    doc = {"name": "Tiny", "topics": [{"name": "orders"}]}
    save(client, saved, name=saved.name, text=json.dumps(doc, indent=2))
    assert saved.name == "Tiny"

    save(client, saved, name='Tiny "v2"', text=saved.text)

    assert saved.format == "json" and saved.name == 'Tiny "v2"'
    assert json.loads(saved.text) == {**doc, "name": 'Tiny "v2"'}


@pytest.mark.django_db
def test_a_name_yaml_would_misread_is_quoted() -> None:
    client = Client()
    saved = new_scenario(client)
    for name in ("Orders: v2 # draft", "yes", "42", "- a list?", "it's \\ fine"):
        save(client, saved, name=name, text=saved.text)
        assert saved.name == name == loaded_name(saved.text), name
        assert saved.valid


@pytest.mark.django_db
def test_new_forked_and_imported_scenarios_have_one_name() -> None:
    client = Client()
    blank = client.post("/scenarios/new", {})
    saved = SavedScenario.objects.get(pk=blank["Location"].rstrip("/").split("/")[-1])
    assert saved.name == loaded_name(saved.text) == "My scenario"
    assert saved.text == scenario_views.BLANK_TEXT

    client.post(f"/scenarios/{saved.id}/fork")
    fork = SavedScenario.objects.get(forked_from=saved)
    assert fork.name == loaded_name(fork.text) == "My scenario (fork)"

    # a file without a name: named after the file, in its own format
    client.post(
        "/scenarios/import",
        {"file": SimpleUploadedFile("night.yaml", b"# orders\nseed: 1\ntopics: []\n")},
    )
    client.post(
        "/scenarios/import",
        {"file": SimpleUploadedFile("day.json", b'{\n  "seed": 1\n}\n')},
    )
    night = SavedScenario.objects.get(name="night")
    assert night.text == "# orders\nname: night\nseed: 1\ntopics: []\n"
    day = SavedScenario.objects.get(name="day")
    assert day.format == "json" and json.loads(day.text) == {"name": "day", "seed": 1}


@pytest.mark.django_db
def test_a_rename_the_text_cannot_follow_says_so() -> None:
    client = Client()
    saved = new_scenario(client)
    broken = "name: Broken\ntopics:\n  - name: orders\n   partitions: 3\n"

    page = save(client, saved, name="Fixed later", text=broken)

    assert (saved.name, saved.text, saved.valid) == ("Fixed later", broken, False)
    assert scenario_views.ERR_NAME_NOT_IN_TEXT.format(name="Fixed later") in page
    # once the text parses, saving it makes the names one again
    fixed = broken.replace("   partitions", "    partitions")
    save(client, saved, name="Fixed later", text=fixed)
    assert saved.name == loaded_name(saved.text) == "Fixed later"


def test_with_name_changes_only_the_name_and_keeps_comments_and_layout() -> None:
    with_name = scenario_views.with_name
    text = "# night orders\nname: Old  # was the demo\nseed: 1\ntopics: [{name: orders}]\n"
    assert with_name(text, "New") == (
        "# night orders\nname: New  # was the demo\nseed: 1\ntopics: [{name: orders}]\n"
    )
    folded = "name: >\n  A long\n  name\nseed: 1\n"
    assert with_name(folded, "Short") == "name: Short\nseed: 1\n"
    assert with_name("name: Same\n", "Same") == "name: Same\n"
    flow = '{"seed": 1, "name": "Old"}'
    assert with_name(flow, "New") == '{"seed": 1, "name": "New"}'
    assert with_name("{}", "New") == '{"name": "New"}'
    assert with_name('{"seed": 1}', "New") == '{"name": "New", "seed": 1}'
    # what cannot be changed safely is left alone: None
    assert with_name("topics: [", "New") is None
    assert with_name("- a\n- b\n", "New") is None
    assert with_name("name: [a, b]\n", "New") is None


@pytest.mark.django_db(transaction=True)
def test_a_simulation_started_from_a_renamed_scenario_carries_its_name() -> None:
    from asgiref.sync import async_to_sync

    client = Client()
    saved = new_scenario(client)
    save(client, saved, name="Orders at night", text=saved.text)
    try:
        r = client.post(f"/scenarios/{saved.id}/start")
        assert r.status_code == 302
        assert SimulationRecord.objects.get().name == "Orders at night"
    finally:
        async_to_sync(stop_all_runners)()
