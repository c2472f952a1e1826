"""Saved scenarios: the list, the editor (problems beside their lines), fork, export, import,
share by link, start, limits and the admin, through Django's test client."""

from __future__ import annotations

import html
import json
import re

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from dashboard import scenario_views
from dashboard.models import SavedScenario, SimulationRecord
from dashboard.views import preset_text
from tests.web_helpers import stop_all_runners

pytestmark = pytest.mark.django_db

ECOMMERCE = preset_text("ecommerce") or ""
# consumers[1] is Inventory; its processing line is line 38 of the preset
SLOW_INVENTORY = "    processing: {dist: lognormal, mean_ms: 25, sigma: 0.4}"
ZERO_INVENTORY = "    processing: {dist: lognormal, mean_ms: 0, sigma: 0.4}"
NOTE = re.compile(r'<li class="editor__note" id="note-line-(\d+)" data-line="\1"[^>]*>(.*?)</li>')
GUTTER = re.compile(r'<ol class="editor__gutter"[^>]*>(.*?)</ol>', re.S)


def notes(page: str) -> dict[int, str]:
    """The problems shown beside the text, by line number, as the reader sees them."""
    return {
        int(n): " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())
        for n, body in NOTE.findall(page)
    }


def marked_lines(page: str) -> list[int]:
    """Line numbers the gutter marks as having a problem."""
    match = GUTTER.search(page)
    assert match is not None
    items = re.findall(r"<li([^>]*)>(\d+)</li>", match.group(1))
    return [int(n) for attrs, n in items if "problem" in attrs]


def new_from_preset(client: Client, slug: str = "ecommerce") -> SavedScenario:
    r = client.post("/scenarios/new", {"preset": slug})
    assert r.status_code == 302, r.content
    scenario_id = r["Location"].rstrip("/").split("/")[-1]
    assert r["Location"] == f"/scenarios/{scenario_id}/"
    return SavedScenario.objects.get(pk=scenario_id)


def page_of(client: Client, saved: SavedScenario) -> str:
    r = client.get(f"/scenarios/{saved.id}/")
    assert r.status_code == 200
    return r.content.decode()


def test_home_links_to_your_scenarios() -> None:
    page = Client().get("/").content.decode()
    assert 'href="/scenarios/"' in page


def test_a_preset_becomes_a_saved_scenario_owned_by_this_browser() -> None:
    client = Client()
    saved = new_from_preset(client)
    assert (saved.name, saved.text, saved.format, saved.valid) == (
        "E-commerce order flow",
        ECOMMERCE,
        "yaml",
        True,
    )
    assert saved.owner_session == client.session.session_key
    listing = client.get("/scenarios/").content.decode()
    assert f'href="/scenarios/{saved.id}/"' in listing and "E-commerce order flow" in listing
    page = page_of(client, saved)
    assert 'id="scenario-status">valid<' in page and 'id="save-scenario"' in page
    assert html.escape(ECOMMERCE.splitlines()[0]) in page
    assert 'id="read-only"' not in page


def test_the_blank_scenario_is_valid_and_the_list_is_per_browser() -> None:
    client = Client()
    r = client.post("/scenarios/new", {})
    saved = SavedScenario.objects.get()
    assert r["Location"] == f"/scenarios/{saved.id}/"
    assert saved.text == scenario_views.BLANK_TEXT and saved.valid
    assert "no-scenarios" in Client().get("/scenarios/").content.decode()


def test_validate_shows_a_field_error_beside_the_line_it_concerns_and_saves_nothing() -> None:
    client = Client()
    saved = new_from_preset(client)
    text = ECOMMERCE.replace(SLOW_INVENTORY, ZERO_INVENTORY)
    assert text.split("\n")[37] == ZERO_INVENTORY  # line 38
    r = client.post(
        f"/scenarios/{saved.id}/", {"name": saved.name, "text": text, "action": "validate"}
    )
    assert r.status_code == 200
    page = r.content.decode()
    assert notes(page) == {38: "consumers[1].processing.mean_ms: must be > 0"}
    assert marked_lines(page) == [38]
    assert "Not saved yet" in page and "cannot be started" in page
    saved.refresh_from_db()
    assert saved.text == ECOMMERCE and saved.valid


def test_a_yaml_syntax_error_sits_on_the_line_it_names() -> None:
    client = Client()
    saved = new_from_preset(client, "basic")
    text = "name: Broken\ntopics:\n  - name: orders\n   partitions: 3\n"
    r = client.post(f"/scenarios/{saved.id}/", {"name": "x", "text": text, "action": "validate"})
    page = r.content.decode()
    assert list(notes(page)) == [4] and "invalid YAML at line 4" in notes(page)[4]
    assert marked_lines(page) == [4]


def test_json_errors_are_placed_on_their_lines_too() -> None:
    client = Client()
    saved = new_from_preset(client, "basic")
    text = '{\n  "topics": [\n    {"name": "orders", "partitions": 0}\n  ],\n  "producers": [7]\n}'
    r = client.post(f"/scenarios/{saved.id}/", {"name": "x", "text": text, "action": "validate"})
    assert notes(r.content.decode()) == {
        3: "topics[0].partitions: must be >= 1",
        5: "producers[0]: must be a mapping, got a number",
    }
    r = client.post(
        f"/scenarios/{saved.id}/", {"name": "x", "text": '{\n"a": 1,\n}', "action": "validate"}
    )
    assert list(notes(r.content.decode())) == [3]


def test_a_path_missing_from_the_text_falls_back_to_its_nearest_ancestor() -> None:
    text = "topics:\n  - name: orders\nconsumers:\n  - name: email\n    topics: [orders]\n"
    problems = scenario_views.place_problems(
        text,
        [
            ("consumers[0].processing.mean_ms", "is required"),
            ("consumers[5]", "x"),
            ("", "whole document"),
        ],
    )
    assert [(p.line, p.path) for p in problems] == [
        (1, ""),
        (3, "consumers[5]"),
        (4, "consumers[0].processing.mean_ms"),
    ]


def test_saving_invalid_text_keeps_a_draft_that_is_marked_and_cannot_start() -> None:
    client = Client()
    saved = new_from_preset(client)
    text = ECOMMERCE.replace(SLOW_INVENTORY, ZERO_INVENTORY)
    r = client.post(
        f"/scenarios/{saved.id}/",
        {"name": "My shop", "text": text.replace("\n", "\r\n"), "action": "save"},
        follow=True,
    )
    page = r.content.decode()
    assert "Saved as a draft with 1 problem" in page
    assert notes(page) == {38: "consumers[1].processing.mean_ms: must be > 0"}
    saved.refresh_from_db()
    # renamed in the Name field: the text's name: follows (a scenario has one name)
    renamed = text.replace("name: E-commerce order flow\n", "name: My shop\n", 1)
    assert (saved.name, saved.text, saved.valid) == ("My shop", renamed, False)
    assert "draft: has problems" in client.get("/scenarios/").content.decode()
    r = client.post(f"/scenarios/{saved.id}/start", follow=True)
    assert scenario_views.ERR_CANNOT_START in r.content.decode()
    assert not SimulationRecord.objects.exists()


def test_saving_json_text_records_the_format() -> None:
    client = Client()
    saved = new_from_preset(client, "basic")
    doc = {"name": "Tiny", "topics": [{"name": "orders"}]}
    r = client.post(
        f"/scenarios/{saved.id}/",
        {"name": "Tiny", "text": json.dumps(doc, indent=2), "action": "save"},
        follow=True,
    )
    assert "Saved." in r.content.decode()
    saved.refresh_from_db()
    assert (saved.format, saved.valid, saved.name) == ("json", True, "Tiny")


def test_fork_makes_a_copy_owned_by_the_forking_browser_and_leaves_the_original() -> None:
    owner, other = Client(), Client()
    original = new_from_preset(owner)
    r = other.post(f"/scenarios/{original.id}/fork")
    fork = SavedScenario.objects.exclude(pk=original.id).get()
    assert r["Location"] == f"/scenarios/{fork.id}/"
    assert fork.name == "E-commerce order flow (fork)"
    assert fork.text == original.text.replace(
        "name: E-commerce order flow\n", "name: E-commerce order flow (fork)\n", 1
    )
    assert fork.forked_from_id == original.id
    assert fork.owner_session == other.session.session_key != original.owner_session
    page = page_of(other, fork)
    assert 'id="forked-from"' in page and 'id="save-scenario"' in page
    other.post(f"/scenarios/{fork.id}/", {"name": "Mine", "text": "seed: 1", "action": "save"})
    original.refresh_from_db()
    assert (original.name, original.text) == ("E-commerce order flow", ECOMMERCE)


def test_export_downloads_a_file_that_imports_back_unchanged() -> None:
    client = Client()
    saved = new_from_preset(client)
    r = client.get(f"/scenarios/{saved.id}/export")
    assert r.status_code == 200
    assert r["Content-Type"] == "application/yaml; charset=utf-8"
    assert r["Content-Disposition"] == 'attachment; filename="e-commerce-order-flow.yaml"'
    assert r.content.decode() == ECOMMERCE
    upload = SimpleUploadedFile("e-commerce-order-flow.yaml", r.content)
    r = client.post("/scenarios/import", {"file": upload}, follow=True)
    assert "Imported e-commerce-order-flow.yaml." in r.content.decode()
    imported = SavedScenario.objects.exclude(pk=saved.id).get()
    assert (imported.text, imported.name, imported.valid) == (ECOMMERCE, saved.name, True)


def test_import_takes_json_and_refuses_other_files_with_a_message() -> None:
    client = Client()
    doc = b'{"topics": [{"name": "orders", "partitions": 0}]}'
    r = client.post("/scenarios/import", {"file": SimpleUploadedFile("shop.json", doc)})
    imported = SavedScenario.objects.get()
    assert r["Location"] == f"/scenarios/{imported.id}/"
    assert (imported.name, imported.format, imported.valid) == ("shop", "json", False)
    export = client.get(f"/scenarios/{imported.id}/export")
    assert export["Content-Disposition"] == 'attachment; filename="shop.json"'
    for upload, message in (
        (SimpleUploadedFile("notes.txt", b"seed: 1"), scenario_views.ERR_BAD_SUFFIX),
        (SimpleUploadedFile("bad.yaml", b"\xff\xfe\x00"), scenario_views.ERR_NOT_UTF8),
    ):
        r = client.post("/scenarios/import", {"file": upload}, follow=True)
        assert message in r.content.decode()
    assert SavedScenario.objects.count() == 1


def test_a_shared_link_is_read_only_for_other_browsers_and_saving_is_403() -> None:
    owner, other = Client(), Client()
    saved = new_from_preset(owner)
    share_url = f"http://testserver/scenarios/{saved.id}/"
    assert f'value="{share_url}"' in page_of(owner, saved)
    page = page_of(other, saved)
    assert 'id="read-only"' in page and 'id="save-scenario"' not in page
    assert re.search(r"<textarea[^>]*\sreadonly", page)
    assert 'id="fork-scenario"' in page and 'id="start-scenario"' in page
    assert f'href="/scenarios/{saved.id}/export"' in page
    for url, data in (
        (f"/scenarios/{saved.id}/", {"name": "Taken", "text": "seed: 1", "action": "save"}),
        (f"/scenarios/{saved.id}/delete", {}),
    ):
        r = other.post(url, data)
        assert r.status_code == 403
        assert html.escape(scenario_views.ERR_NOT_OWNER) in r.content.decode()
    saved.refresh_from_db()
    assert (saved.name, saved.text) == ("E-commerce order flow", ECOMMERCE)


def test_the_owner_can_delete_a_scenario() -> None:
    client = Client()
    saved = new_from_preset(client)
    r = client.post(f"/scenarios/{saved.id}/delete", follow=True)
    assert "Deleted E-commerce order flow." in r.content.decode()
    assert not SavedScenario.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_start_opens_a_live_simulation_from_the_scenario_for_any_viewer() -> None:
    owner, other = Client(), Client()
    saved = new_from_preset(owner, "basic")
    try:
        r = other.post(f"/scenarios/{saved.id}/start")
        record = SimulationRecord.objects.get()
        assert r.status_code == 302 and r["Location"] == f"/simulations/{record.id}/"
        assert (record.name, record.mode) == ("One producer, one consumer", "live")
        assert record.owner_session == other.session.session_key
        r = owner.post(f"/scenarios/{new_from_preset(owner, 'sync-vs-events').id}/start")
        assert SimulationRecord.objects.get(pk=r["Location"].split("/")[-2]).mode == "compare"
    finally:
        async_to_sync(stop_all_runners)()


def test_text_over_256_kb_is_refused_with_a_message() -> None:
    client = Client()
    saved = new_from_preset(client, "basic")
    big = "# " + "x" * (256 * 1024) + "\nseed: 1\n"
    r = client.post(f"/scenarios/{saved.id}/", {"name": "Big", "text": big, "action": "save"})
    assert r.status_code == 400
    assert scenario_views.ERR_TOO_LARGE in r.content.decode()
    saved.refresh_from_db()
    assert saved.name == "One producer, one consumer"
    r = client.post(
        "/scenarios/import", {"file": SimpleUploadedFile("big.yaml", big.encode())}, follow=True
    )
    assert scenario_views.ERR_TOO_LARGE in r.content.decode()
    assert SavedScenario.objects.count() == 1


def test_a_browser_may_keep_at_most_50_scenarios() -> None:
    client = Client()
    first = new_from_preset(client, "basic")
    SavedScenario.objects.bulk_create(
        SavedScenario(name=f"s{i}", text="seed: 1", owner_session=first.owner_session)
        for i in range(49)
    )
    for url in ("/scenarios/new", f"/scenarios/{first.id}/fork"):
        r = client.post(url, {"preset": "basic"}, follow=True)
        assert scenario_views.ERR_TOO_MANY in r.content.decode()
    assert SavedScenario.objects.count() == 50
    # another browser still may
    assert new_from_preset(Client(), "basic").owner_session != first.owner_session


def test_an_unknown_scenario_is_a_404_page() -> None:
    client = Client()
    for r in (
        client.get("/scenarios/ffffffffffff/"),
        client.get("/scenarios/ffffffffffff/export"),
        client.post("/scenarios/ffffffffffff/fork"),
    ):
        assert r.status_code == 404 and b"No saved scenario" in r.content


def test_names_and_text_are_escaped() -> None:
    client = Client()
    saved = new_from_preset(client, "basic")
    evil = "<script>alert(1)</script>"
    client.post(
        f"/scenarios/{saved.id}/", {"name": evil, "text": f"name: '{evil}'", "action": "save"}
    )
    for page in (page_of(client, saved), client.get("/scenarios/").content.decode()):
        assert evil not in page and html.escape(evil) in page


def test_the_admin_lists_and_searches_saved_scenarios() -> None:
    client = Client()
    saved = new_from_preset(client)
    admin = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(admin)
    r = client.get("/admin/dashboard/savedscenario/", {"q": "commerce"})
    assert r.status_code == 200
    page = r.content.decode()
    assert "E-commerce order flow" in page and saved.id in page
    assert saved.owner_session not in page
    r = client.get(f"/admin/dashboard/savedscenario/{saved.id}/change/")
    assert r.status_code == 200
