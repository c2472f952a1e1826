"""Scenario files (YAML, JSON, validation messages, presets) and the command line."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from simulator import ScenarioError, load_scenario, parse_scenario
from simulator.cli import main

ROOT = Path(__file__).resolve().parent.parent
PRESETS = sorted((ROOT / "simulator/presets").glob("*.yaml"))

CONTRACT = """
seed: 7
topics: [{name: orders, partitions: 3}]
producers: [{name: checkout, topic: orders, event: OrderPlaced, rate: 50, arrival: poisson}]
consumers:
  - name: email
    topics: [orders]
    instances: 1
    processing: {dist: exponential, mean_ms: 20}
    failure_rate: 0.0
    retry: {max_attempts: 3, backoff_ms: 100}
faults: [{at: 30, consumer: email, action: down}, {at: 60, consumer: email, action: up}]
"""


def _errors(doc: object) -> list[tuple[str, str]]:
    with pytest.raises(ScenarioError) as e:
        parse_scenario(doc)
    return e.value.errors


def test_the_contract_scenario_parses_in_yaml_and_in_json() -> None:
    a = parse_scenario(CONTRACT)
    import yaml

    b = parse_scenario(json.dumps(yaml.safe_load(CONTRACT)))
    assert a == b
    assert (a.seed, a.topics[0].partitions, a.consumers[0].retry.max_attempts) == (7, 3, 3)
    assert [(f.at, f.action) for f in a.faults] == [(30, "down"), (60, "up")]


def test_validation_names_the_field_path_and_the_problem() -> None:
    doc = {
        "topics": [{"name": "orders", "partitions": 0}],
        "producers": [{"name": "p", "topic": "nope", "event": "E", "rate": "fast"}],
        "consumers": [
            {"name": "a", "topics": ["orders"]},
            {
                "name": "b",
                "topics": ["orders"],
                "processing": {"dist": "exponential", "mean_ms": 0},
            },
        ],
        "faults": [{"at": 1, "consumer": "ghost", "action": "explode"}],
        "colour": "red",
    }
    assert _errors(doc) == [
        (
            "colour",
            "unknown field (known fields: seed, name, description, duration, "
            "sample_interval_s, topics, producers, consumers, faults, script, chain, lesson, "
            "sync, schemas, broker, trace)",
        ),
        ("topics[0].partitions", "must be >= 1"),
        ("producers[0].rate", "must be a number, got a string"),
        ("consumers[1].processing.mean_ms", "must be > 0"),
        (
            "faults[0].action",
            "must be one of down, up, crash, slow, delay, failure_rate, instances, rate, "
            "got 'explode'",
        ),
        ("faults[0].consumer", "unknown consumer 'ghost'"),
    ]


def test_cross_references_are_checked() -> None:
    doc = {
        "topics": [{"name": "orders"}, {"name": "orders"}],
        "producers": [{"name": "p", "topic": "nope", "event": "E", "rate": 1}],
        "consumers": [
            {
                "name": "a",
                "topics": ["orders", "payments"],
                "emits": [{"event": "X", "topic": "ghost"}],
            }
        ],
        "faults": [{"at": 1, "consumer": "ghost", "action": "down"}],
        "chain": ["a", "b"],
    }
    assert _errors(doc) == [
        ("topics[1].name", "duplicate name 'orders'"),
        ("producers[0].topic", "unknown topic 'nope'"),
        ("consumers[0].topics[1]", "unknown topic 'payments'"),
        ("consumers[0].emits[0].topic", "unknown topic 'ghost'"),
        ("faults[0].consumer", "unknown consumer 'ghost'"),
        ("chain[1]", "unknown consumer 'b'"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("topics: [unclosed", "invalid YAML at line 1, column 18: expected ',' or ']'"),
        ('{"topics": [}', "invalid JSON at line 1, column 13"),
        ("- just\n- a list", "a scenario must be a mapping, got a list"),
        ("", "a scenario must be a mapping, got nothing"),
        (
            "topics: []\nconsumers: [{name: a, topics: [x], emits: [{on: X}]}]",
            "field names must be text",
        ),
    ],
)
def test_malformed_text_gets_a_clear_message(text: str, message: str) -> None:
    errors = _errors(text)
    assert any(message in m for _, m in errors), errors


def test_limits_on_scenario_size_are_enforced() -> None:
    doc = {
        "topics": [{"name": "t", "partitions": 10_000}],
        "producers": [{"name": "p", "topic": "t", "event": "E", "rate": 1e9}],
    }
    assert _errors(doc) == [
        ("topics[0].partitions", "must be <= 64"),
        ("producers[0].rate", "must be <= 50000"),
    ]


@pytest.mark.parametrize("path", PRESETS, ids=[p.stem for p in PRESETS])
def test_every_preset_is_valid_and_runs(path: Path) -> None:
    from simulator import Simulation

    sc = load_scenario(path)
    assert sc.name and sc.description
    sim = Simulation(sc)
    sim.run_until(min(sc.duration, 20))
    assert sum(t.produced for t in sim.topics.values()) > 0


def test_the_ecommerce_preset_has_the_lessons_six_services() -> None:
    sc = load_scenario(ROOT / "simulator/presets/ecommerce.yaml")
    assert [p.name for p in sc.producers] == ["order-service"]
    assert [c.name for c in sc.consumers] == [
        "payment",
        "inventory",
        "fulfillment",
        "notification",
        "analytics",
    ]
    inventory = sc.consumer("inventory")
    assert inventory is not None and inventory.events == ("OrderPlaced", "PaymentProcessed")


def test_cli_json_prints_the_metrics_document() -> None:
    out, err = io.StringIO(), io.StringIO()
    path = ROOT / "tests/contract.yaml"
    path.write_text(CONTRACT)
    try:
        assert (
            main(["run", str(path), "--until", "20", "--json", "--seed", "3"], out=out, err=err)
            == 0
        )
    finally:
        path.unlink()
    m = json.loads(out.getvalue())
    assert m["time"] == 20.0 and m["seed"] == 3
    assert m["topics"]["orders"]["produced"] > 800
    g = m["groups"]["email"]
    for key in ("processed", "lag", "dead_lettered", "redelivered"):
        assert isinstance(g[key], int)
    assert g["wait_ms"]["mean"] > 0
    assert 0 < g["end_to_end_ms"]["p50"] <= g["end_to_end_ms"]["p95"] <= g["end_to_end_ms"]["p99"]
    assert g["end_to_end_ms"]["mean"] > 0


def test_cli_summary_table_names_every_service() -> None:
    out = io.StringIO()
    assert main(["run", "ecommerce", "--until", "10"], out=out, err=io.StringIO()) == 0
    text = out.getvalue()
    for name in ("payment", "inventory", "fulfillment", "notification", "analytics", "orders"):
        assert name in text


def test_cli_bad_scenario_exits_2_with_the_errors_on_stderr(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("topics: [{name: a, partitions: 0}]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "simulator", "run", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "topics[0].partitions: must be >= 1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_missing_file_exits_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "simulator", "run", "/no/such.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert (proc.returncode, "no such file" in proc.stderr) == (2, True)
