"""The event schema contract: the JSON Schema subset, compatibility modes and the registry.

The lesson's own example runs through it: OrderPlaced.v1 carries order id, customer id, items,
total and timestamp; v2 adds an optional ``currency`` (default "USD"), which every mode accepts;
a v3 that renames ``total`` to ``amount`` breaks BACKWARD, FORWARD and FULL, each for its own
reason, and only NONE lets it through.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.schema import (
    TYPES,
    Compatibility,
    IncompatibleSchema,
    SchemaError,
    SchemaRegistry,
    SubjectNotFound,
    VersionNotFound,
    check_compatibility,
    check_schema,
    parse_versioned,
    read_payload,
    validate,
    versioned,
)

BACKWARD = Compatibility.BACKWARD
FORWARD = Compatibility.FORWARD
FULL = Compatibility.FULL
NONE = Compatibility.NONE
ALL_MODES = list(Compatibility)

ORDER_PLACED_V1: dict[str, Any] = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string"},
        "customer_id": {"type": "integer"},
        "items": {"type": "array"},
        "total": {"type": "number"},
        "timestamp": {"type": "number"},
    },
    "required": ["order_id", "customer_id", "items", "total", "timestamp"],
}

ORDER_PLACED_V2: dict[str, Any] = copy.deepcopy(ORDER_PLACED_V1)
ORDER_PLACED_V2["properties"]["currency"] = {"type": "string", "default": "USD"}

# v3 renames total -> amount: to old data and old readers that is a removal plus an addition.
ORDER_PLACED_V3_RENAMED: dict[str, Any] = copy.deepcopy(ORDER_PLACED_V2)
ORDER_PLACED_V3_RENAMED["properties"]["amount"] = ORDER_PLACED_V3_RENAMED["properties"].pop("total")
ORDER_PLACED_V3_RENAMED["required"] = ["order_id", "customer_id", "items", "amount", "timestamp"]

ORDER = {"order_id": "o-1", "customer_id": 42, "items": ["sku-1"], "total": 19.5, "timestamp": 3.0}

AMOUNT_ADDED = "field 'amount' was added as required without a default (old data lacks it)"
TOTAL_REMOVED = "field 'total' was removed but the old schema requires it (new data lacks it)"


def obj(
    required: Mapping[str, Any] | None = None,
    optional: Mapping[str, Any] | None = None,
    *,
    closed: bool | None = None,
) -> dict[str, Any]:
    """An object schema; a property given as a type name (or [T, "null"]) becomes {"type": T}."""

    def prop(p: Any) -> Any:
        return p if isinstance(p, dict) else {"type": p}

    required = required or {}
    node: dict[str, Any] = {
        "type": "object",
        "properties": {name: prop(p) for name, p in {**required, **(optional or {})}.items()},
        "required": list(required),
    }
    if closed is not None:
        node["additionalProperties"] = not closed
    return node


def compat(new: dict[str, Any], old: dict[str, Any]) -> dict[str, list[str]]:
    """The reasons for the four base modes, to assert them all at once."""
    return {m: check_compatibility(new, old, m) for m in ("BACKWARD", "FORWARD", "FULL", "NONE")}


# --- the lesson's example ---------------------------------------------------------------------


def test_order_placed_v2_adding_optional_currency_is_compatible_in_every_mode() -> None:
    for mode in ALL_MODES:
        assert check_compatibility(ORDER_PLACED_V2, ORDER_PLACED_V1, mode) == [], mode


def test_order_placed_v3_renaming_total_to_amount_is_incompatible_except_under_none() -> None:
    assert compat(ORDER_PLACED_V3_RENAMED, ORDER_PLACED_V2) == {
        # new consumers read old events: those have no 'amount', and v3 requires it
        "BACKWARD": [AMOUNT_ADDED],
        # old consumers read new events: those have no 'total', and v2 requires it
        "FORWARD": [TOTAL_REMOVED],
        # both directions must hold, so both reasons
        "FULL": [AMOUNT_ADDED, TOTAL_REMOVED],
        "NONE": [],
    }


def test_order_placed_v1_and_v2_events_are_readable_by_consumers_of_either_version() -> None:
    v2_event = {**ORDER, "currency": "EUR"}
    assert read_payload(ORDER_PLACED_V2, ORDER) == ({**ORDER, "currency": "USD"}, [])
    assert read_payload(ORDER_PLACED_V1, v2_event) == (v2_event, [])


def test_a_v2_consumer_cannot_read_a_v3_event_and_says_why() -> None:
    v3_event = {**ORDER, "amount": ORDER["total"]}
    del v3_event["total"]
    _, problems = read_payload(ORDER_PLACED_V2, v3_event)
    assert problems == ["missing required field 'total'"]


def test_the_registry_rejects_the_renaming_v3_at_publish_time() -> None:
    registry = SchemaRegistry()
    assert registry.register("OrderPlaced", ORDER_PLACED_V1) == 1
    assert registry.register("OrderPlaced", ORDER_PLACED_V2) == 2
    with pytest.raises(IncompatibleSchema) as caught:
        registry.register("OrderPlaced", ORDER_PLACED_V3_RENAMED)
    assert (
        str(caught.value)
        == f"OrderPlaced: version 3 is not BACKWARD compatible with version 2: {AMOUNT_ADDED}"
    )
    assert caught.value.reasons == [AMOUNT_ADDED]
    assert registry.versions("OrderPlaced") == [1, 2]

    registry.set_compatibility("OrderPlaced", "NONE")
    assert registry.register("OrderPlaced", ORDER_PLACED_V3_RENAMED) == 3


def test_the_registry_names_subject_mode_version_and_every_reason() -> None:
    registry = SchemaRegistry(compatibility=FULL)
    registry.register("OrderPlaced", ORDER_PLACED_V1)
    registry.register("OrderPlaced", ORDER_PLACED_V2)
    with pytest.raises(IncompatibleSchema) as caught:
        registry.register("OrderPlaced", ORDER_PLACED_V3_RENAMED)
    err = caught.value
    assert (err.subject, err.version, err.mode) == ("OrderPlaced", 3, FULL)
    assert err.reasons == [AMOUNT_ADDED, TOTAL_REMOVED]
    assert err.conflicts == {2: [AMOUNT_ADDED, TOTAL_REMOVED]}
    assert str(err) == (
        "OrderPlaced: version 3 is not FULL compatible with version 2: "
        f"{AMOUNT_ADDED}; {TOTAL_REMOVED}"
    )


def test_a_type_change_is_reported_as_the_lesson_example_says() -> None:
    v3 = copy.deepcopy(ORDER_PLACED_V2)
    v3["properties"]["total"] = {"type": "string"}
    registry = SchemaRegistry()
    registry.register("OrderPlaced", ORDER_PLACED_V1)
    registry.register("OrderPlaced", ORDER_PLACED_V2)
    with pytest.raises(IncompatibleSchema, match=r"^OrderPlaced: version 3 ") as caught:
        registry.register("OrderPlaced", v3)
    assert str(caught.value) == (
        "OrderPlaced: version 3 is not BACKWARD compatible with version 2: "
        "field 'total' changed type from number to string"
    )


# --- BACKWARD: the new schema reads data written with the old one -------------------------------


def test_backward_allows_adding_an_optional_field() -> None:
    assert (
        check_compatibility(obj({"a": "string"}, {"b": "integer"}), obj({"a": "string"}), BACKWARD)
        == []
    )


def test_backward_allows_adding_a_required_field_with_a_default() -> None:
    new = obj({"a": "string", "b": {"type": "integer", "default": 0}})
    assert check_compatibility(new, obj({"a": "string"}), BACKWARD) == []


def test_backward_rejects_a_new_required_field_without_default() -> None:
    assert check_compatibility(
        obj({"a": "string", "b": "integer"}), obj({"a": "string"}), BACKWARD
    ) == ["field 'b' was added as required without a default (old data lacks it)"]


def test_backward_allows_removing_a_field() -> None:
    assert (
        check_compatibility(obj({"a": "string"}), obj({"a": "string", "b": "integer"}), BACKWARD)
        == []
    )


def test_backward_rejects_removing_a_field_when_the_new_schema_is_closed() -> None:
    new = obj({"a": "string"}, closed=True)
    assert check_compatibility(new, obj({"a": "string", "b": "integer"}), BACKWARD) == [
        "field 'b' was removed but the new schema does not allow additional properties "
        "(old data has it)"
    ]


def test_backward_rejects_making_an_optional_field_required() -> None:
    assert check_compatibility(obj({"a": "string"}), obj(optional={"a": "string"}), BACKWARD) == [
        "field 'a' became required without a default (old data may lack it)"
    ]


def test_backward_allows_making_an_optional_field_required_with_a_default() -> None:
    new = obj({"a": {"type": "string", "default": ""}})
    assert check_compatibility(new, obj(optional={"a": "string"}), BACKWARD) == []


def test_backward_allows_making_a_required_field_optional() -> None:
    assert check_compatibility(obj(optional={"a": "string"}), obj({"a": "string"}), BACKWARD) == []


def test_backward_rejects_a_type_change() -> None:
    assert check_compatibility(obj({"a": "string"}), obj({"a": "integer"}), BACKWARD) == [
        "field 'a' changed type from integer to string"
    ]


def test_backward_allows_widening_integer_to_number_but_not_narrowing() -> None:
    assert check_compatibility(obj({"a": "number"}), obj({"a": "integer"}), BACKWARD) == []
    assert check_compatibility(obj({"a": "integer"}), obj({"a": "number"}), BACKWARD) == [
        "field 'a' changed type from number to integer (old data may hold non-integer numbers)"
    ]


# --- FORWARD: the old schema reads data written with the new one ---------------------------------


def test_forward_allows_adding_a_field_required_or_not() -> None:
    old = obj({"a": "string"})
    assert check_compatibility(obj({"a": "string", "b": "integer"}), old, FORWARD) == []
    assert check_compatibility(obj({"a": "string"}, {"b": "integer"}), old, FORWARD) == []


def test_forward_rejects_adding_a_field_when_the_old_schema_is_closed() -> None:
    old = obj({"a": "string"}, closed=True)
    assert check_compatibility(obj({"a": "string"}, {"b": "integer"}), old, FORWARD) == [
        "field 'b' was added but the old schema does not allow additional properties "
        "(new data has it)"
    ]


def test_forward_rejects_removing_a_required_field() -> None:
    assert check_compatibility(
        obj({"a": "string"}), obj({"a": "string", "b": "integer"}), FORWARD
    ) == ["field 'b' was removed but the old schema requires it (new data lacks it)"]


def test_forward_allows_removing_an_optional_field() -> None:
    assert (
        check_compatibility(obj({"a": "string"}), obj({"a": "string"}, {"b": "integer"}), FORWARD)
        == []
    )


def test_forward_allows_removing_a_required_field_the_old_schema_has_a_default_for() -> None:
    old = obj({"a": "string", "b": {"type": "integer", "default": 0}})
    assert check_compatibility(obj({"a": "string"}), old, FORWARD) == []


def test_forward_rejects_making_a_required_field_optional() -> None:
    assert check_compatibility(obj(optional={"a": "string"}), obj({"a": "string"}), FORWARD) == [
        "field 'a' became optional but the old schema requires it (new data may lack it)"
    ]


def test_forward_allows_making_an_optional_field_required() -> None:
    assert check_compatibility(obj({"a": "string"}), obj(optional={"a": "string"}), FORWARD) == []


def test_forward_rejects_a_type_change() -> None:
    assert check_compatibility(obj({"a": "string"}), obj({"a": "integer"}), FORWARD) == [
        "field 'a' changed type from integer to string"
    ]


def test_forward_allows_narrowing_number_to_integer_but_not_widening() -> None:
    assert check_compatibility(obj({"a": "integer"}), obj({"a": "number"}), FORWARD) == []
    assert check_compatibility(obj({"a": "number"}), obj({"a": "integer"}), FORWARD) == [
        "field 'a' changed type from integer to number (new data may hold non-integer numbers)"
    ]


# --- FULL: both ---------------------------------------------------------------------------------


def test_full_allows_adding_and_removing_optional_fields() -> None:
    old = obj({"a": "string"}, {"b": "integer"})
    new = obj({"a": "string"}, {"c": "boolean"})
    assert check_compatibility(new, old, FULL) == []


def test_full_rejects_adding_a_required_field_without_default() -> None:
    new = obj({"a": "string", "b": "integer"})
    assert check_compatibility(new, obj({"a": "string"}), FULL) == [
        "field 'b' was added as required without a default (old data lacks it)"
    ]


def test_full_rejects_removing_a_required_field() -> None:
    new = obj({"a": "string"})
    assert check_compatibility(new, obj({"a": "string", "b": "integer"}), FULL) == [
        "field 'b' was removed but the old schema requires it (new data lacks it)"
    ]


def test_full_rejects_a_type_change_and_names_it_once() -> None:
    assert check_compatibility(obj({"a": "string"}), obj({"a": "boolean"}), FULL) == [
        "field 'a' changed type from boolean to string"
    ]


def test_full_rejects_a_type_widening_because_forward_does() -> None:
    assert compat(obj({"a": "number"}), obj({"a": "integer"}))["FULL"] == [
        "field 'a' changed type from integer to number (new data may hold non-integer numbers)"
    ]


def test_full_allows_a_required_field_with_a_default_to_come_and_go() -> None:
    with_b = obj({"a": "string", "b": {"type": "integer", "default": 0}})
    assert check_compatibility(with_b, obj({"a": "string"}), FULL) == []
    assert check_compatibility(obj({"a": "string"}), with_b, FULL) == []


# --- NONE ---------------------------------------------------------------------------------------


def test_none_accepts_anything() -> None:
    assert check_compatibility(obj({"x": "boolean"}, closed=True), ORDER_PLACED_V1, NONE) == []
    assert check_compatibility(ORDER_PLACED_V1, obj({"total": "string"}), NONE) == []


def test_none_still_rejects_a_malformed_schema() -> None:
    with pytest.raises(SchemaError):
        check_compatibility({"type": "object", "properties": {"a": {}}}, ORDER_PLACED_V1, NONE)


def test_modes_accept_their_names_as_strings_in_any_case() -> None:
    assert check_compatibility(ORDER_PLACED_V3_RENAMED, ORDER_PLACED_V2, "backward") == [
        AMOUNT_ADDED
    ]
    with pytest.raises(
        ValueError, match="unknown compatibility mode 'SIDEWAYS'; expected one of BACKWARD"
    ):
        check_compatibility(ORDER_PLACED_V2, ORDER_PLACED_V1, "SIDEWAYS")
    with pytest.raises(ValueError, match="unknown compatibility mode None"):
        SchemaRegistry(compatibility=None)  # type: ignore[arg-type]


# --- nullable unions ----------------------------------------------------------------------------


def test_widening_to_nullable_is_backward_only() -> None:
    # New readers accept null and everything else old data holds; old readers choke on null.
    assert compat(obj({"a": ["number", "null"]}), obj({"a": "number"})) == {
        "BACKWARD": [],
        "FORWARD": [
            "field 'a' changed type from number to nullable number (new data may hold null)"
        ],
        "FULL": ["field 'a' changed type from number to nullable number (new data may hold null)"],
        "NONE": [],
    }


def test_narrowing_from_nullable_is_forward_only() -> None:
    assert compat(obj({"a": "string"}), obj({"a": ["null", "string"]})) == {
        "BACKWARD": [
            "field 'a' changed type from nullable string to string (old data may hold null)"
        ],
        "FORWARD": [],
        "FULL": ["field 'a' changed type from nullable string to string (old data may hold null)"],
        "NONE": [],
    }


def test_changing_the_non_null_type_of_a_nullable_field_is_a_type_change() -> None:
    new, old = obj({"a": ["integer", "null"]}), obj({"a": ["string", "null"]})
    assert check_compatibility(new, old, BACKWARD) == [
        "field 'a' changed type from nullable string to nullable integer "
        "(old data may hold string values)"
    ]


def test_a_nullable_field_accepts_null_and_its_type_only() -> None:
    schema = obj({"a": ["integer", "null"]})
    assert validate(schema, {"a": None}) == []
    assert validate(schema, {"a": 3}) == []
    assert validate(schema, {"a": "3"}) == ["field 'a' must be integer or null, got string"]


# --- nested objects -------------------------------------------------------------------------------


CUSTOMER_V1 = obj({"id": "integer", "address": obj({"city": "string"})})


def test_nested_changes_are_checked_and_named_by_their_path() -> None:
    new = obj({"id": "integer", "address": obj({"city": "string", "zip": "string"})})
    assert compat(obj({"customer": new}), obj({"customer": CUSTOMER_V1})) == {
        "BACKWARD": [
            "field 'customer.address.zip' was added as required without a default "
            "(old data lacks it)"
        ],
        "FORWARD": [],
        "FULL": [
            "field 'customer.address.zip' was added as required without a default "
            "(old data lacks it)"
        ],
        "NONE": [],
    }


def test_nested_type_change_is_named_by_its_path() -> None:
    new = obj({"customer": obj({"id": "string", "address": obj({"city": "string"})})})
    assert check_compatibility(new, obj({"customer": CUSTOMER_V1}), FORWARD) == [
        "field 'customer.id' changed type from integer to string"
    ]


def test_nested_optional_additions_are_fully_compatible() -> None:
    new = obj({"id": "integer", "address": obj({"city": "string"}, {"zip": "string"})})
    assert check_compatibility(obj({"customer": new}), obj({"customer": CUSTOMER_V1}), FULL) == []


def test_giving_a_free_form_object_declared_properties_is_not_backward_compatible() -> None:
    free, structured = obj({"meta": "object"}), obj({"meta": obj({"source": "string"})})
    assert compat(structured, free) == {
        "BACKWARD": [
            "field 'meta' was a free-form object and now declares its properties "
            "(old data may not match them)"
        ],
        "FORWARD": [],
        "FULL": [
            "field 'meta' was a free-form object and now declares its properties "
            "(old data may not match them)"
        ],
        "NONE": [],
    }


def test_nested_payload_problems_are_named_by_their_path() -> None:
    schema = obj({"customer": CUSTOMER_V1})
    payload = {"customer": {"id": "7", "address": {}}}
    assert validate(schema, payload) == [
        "field 'customer.id' must be integer, got string",
        "missing required field 'customer.address.city'",
    ]


def test_a_reader_fills_nested_defaults_without_touching_the_payload() -> None:
    schema = obj(
        {"customer": obj({"id": "integer"}, {"tier": {"type": "string", "default": "std"}})}
    )
    payload = {"customer": {"id": 1}}
    assert read_payload(schema, payload) == ({"customer": {"id": 1, "tier": "std"}}, [])
    assert payload == {"customer": {"id": 1}}


# --- transitive modes -----------------------------------------------------------------------------

# v1 -> v2 removes an optional 'a'; v2 -> v3 adds it back as an integer. Each step is FULL
# compatible with the one before, but v3 and v1 disagree about what 'a' is.
DRIFT = [
    obj({"id": "string"}, {"a": "string"}),
    obj({"id": "string"}),
    obj({"id": "string"}, {"a": "integer"}),
]


@pytest.mark.parametrize("base", ["BACKWARD", "FORWARD", "FULL"])
def test_transitive_modes_catch_drift_that_the_plain_modes_let_through(base: str) -> None:
    plain = SchemaRegistry(compatibility=base)
    assert [plain.register("E", s) for s in DRIFT] == [1, 2, 3]

    transitive = SchemaRegistry(compatibility=f"{base}_TRANSITIVE")
    transitive.register("E", DRIFT[0])
    transitive.register("E", DRIFT[1])
    with pytest.raises(IncompatibleSchema) as caught:
        transitive.register("E", DRIFT[2])
    assert str(caught.value) == (
        f"E: version 3 is not {base}_TRANSITIVE compatible with version 1: "
        "field 'a' changed type from string to integer"
    )
    assert caught.value.conflicts == {1: ["field 'a' changed type from string to integer"]}


def test_transitive_rejection_lists_every_version_it_breaks() -> None:
    registry = SchemaRegistry(compatibility="BACKWARD_TRANSITIVE")
    registry.register("E", obj({"a": "string"}))
    registry.register("E", obj({"a": "string"}, {"b": "string"}))
    with pytest.raises(IncompatibleSchema) as caught:
        registry.register("E", obj({"a": "integer"}, {"b": "string"}))
    reason = "field 'a' changed type from string to integer"
    assert caught.value.conflicts == {1: [reason], 2: [reason]}
    assert caught.value.reasons == [reason, reason]
    assert str(caught.value) == (
        "E: version 3 is not BACKWARD_TRANSITIVE compatible with "
        f"version 1: {reason}; and version 2: {reason}"
    )


def test_a_transitive_mode_on_a_single_pair_is_its_plain_mode() -> None:
    for new, old in [(DRIFT[2], DRIFT[0]), (ORDER_PLACED_V3_RENAMED, ORDER_PLACED_V2)]:
        for base in ("BACKWARD", "FORWARD", "FULL"):
            assert check_compatibility(new, old, f"{base}_TRANSITIVE") == check_compatibility(
                new, old, base
            )


# --- the registry ---------------------------------------------------------------------------------


def test_versions_are_numbered_from_one_per_subject() -> None:
    registry = SchemaRegistry()
    assert registry.register("OrderPlaced", ORDER_PLACED_V1) == 1
    assert registry.register("PaymentProcessed", obj({"payment_id": "string"})) == 1
    assert registry.register("OrderPlaced", ORDER_PLACED_V2) == 2
    assert registry.versions("OrderPlaced") == [1, 2]
    assert registry.subjects() == ["OrderPlaced", "PaymentProcessed"]
    assert registry.get("OrderPlaced") == ORDER_PLACED_V2
    assert registry.get("OrderPlaced", 1) == ORDER_PLACED_V1
    assert registry.get(*parse_versioned("OrderPlaced.v2")) == ORDER_PLACED_V2


def test_re_registering_an_identical_schema_returns_its_version() -> None:
    registry = SchemaRegistry()
    registry.register("OrderPlaced", ORDER_PLACED_V1)
    registry.register("OrderPlaced", ORDER_PLACED_V2)
    # same meaning, different spelling: key order, required order, explicit open content model
    v1_again = json.loads(json.dumps(ORDER_PLACED_V1, sort_keys=True))
    v1_again["required"].reverse()
    v1_again["additionalProperties"] = True
    v1_again["description"] = "An order was placed."
    assert registry.register("OrderPlaced", v1_again) == 1
    assert registry.register("OrderPlaced", ORDER_PLACED_V2) == 2
    assert registry.versions("OrderPlaced") == [1, 2]


def test_a_default_of_a_different_json_value_is_a_different_schema() -> None:
    registry = SchemaRegistry(compatibility=NONE)
    assert registry.register("E", obj(optional={"n": {"type": "number", "default": 1}})) == 1
    assert registry.register("E", obj(optional={"n": {"type": "number", "default": 1.0}})) == 2


def test_re_registering_an_old_version_skips_the_compatibility_check() -> None:
    registry = SchemaRegistry(compatibility=NONE)
    registry.register("E", obj({"a": "string"}))
    registry.register("E", obj({"a": "integer"}))
    registry.set_compatibility("E", BACKWARD)
    assert registry.register("E", obj({"a": "string"})) == 1


def test_a_rejected_schema_changes_nothing() -> None:
    registry = SchemaRegistry()
    registry.register("OrderPlaced", ORDER_PLACED_V1)
    before = registry.as_dict()
    with pytest.raises(IncompatibleSchema):
        registry.register("OrderPlaced", obj({"total": "string"}))
    with pytest.raises(SchemaError):
        registry.register("OrderPlaced", {"type": "object", "properties": {"a": {"type": "float"}}})
    assert registry.as_dict() == before


def test_the_first_version_is_never_checked_against_anything() -> None:
    registry = SchemaRegistry(compatibility="FULL_TRANSITIVE")
    assert registry.register("E", obj({"a": "string"}, closed=True)) == 1


def test_compatibility_is_per_subject_with_a_global_default() -> None:
    registry = SchemaRegistry()
    assert registry.default_compatibility is BACKWARD
    assert registry.compatibility("OrderPlaced") is BACKWARD
    registry.set_compatibility("OrderPlaced", "full")
    registry.set_default_compatibility(FORWARD)
    assert registry.compatibility("OrderPlaced") is FULL
    assert registry.compatibility("Other") is FORWARD
    registry.set_compatibility("OrderPlaced", None)
    assert registry.compatibility("OrderPlaced") is FORWARD


def test_the_subject_mode_decides_what_is_accepted() -> None:
    registry = SchemaRegistry()
    registry.set_compatibility("OrderPlaced", FORWARD)
    registry.register("OrderPlaced", ORDER_PLACED_V2)
    with pytest.raises(IncompatibleSchema, match="not FORWARD compatible"):
        registry.register("OrderPlaced", ORDER_PLACED_V3_RENAMED)
    # a new required field is FORWARD compatible (old consumers ignore it), not BACKWARD
    with_channel = copy.deepcopy(ORDER_PLACED_V2)
    with_channel["properties"]["channel"] = {"type": "string"}
    with_channel["required"].append("channel")
    assert registry.register("OrderPlaced", with_channel) == 2


def test_stored_schemas_cannot_be_changed_from_outside() -> None:
    registry = SchemaRegistry()
    schema = copy.deepcopy(ORDER_PLACED_V1)
    registry.register("OrderPlaced", schema)
    schema["properties"]["total"]["type"] = "string"
    registry.get("OrderPlaced")["properties"]["total"]["type"] = "string"
    assert registry.get("OrderPlaced") == ORDER_PLACED_V1


def test_unknown_subjects_and_versions_raise_lookup_errors() -> None:
    registry = SchemaRegistry()
    with pytest.raises(SubjectNotFound, match="no schema registered for subject 'OrderPlaced'"):
        registry.get("OrderPlaced")
    with pytest.raises(LookupError):
        registry.versions("OrderPlaced")
    registry.register("OrderPlaced", ORDER_PLACED_V1)
    with pytest.raises(
        VersionNotFound, match=r"subject 'OrderPlaced' has no version 2 \(it has 1\)"
    ):
        registry.get("OrderPlaced", 2)
    with pytest.raises(ValueError, match="version must be an integer >= 1, got 0"):
        registry.get("OrderPlaced", 0)
    with pytest.raises(ValueError, match="subject must be a non-empty string"):
        registry.register("", ORDER_PLACED_V1)


def test_as_dict_is_json_and_shows_versions_by_name() -> None:
    registry = SchemaRegistry()
    registry.register("OrderPlaced", ORDER_PLACED_V1)
    registry.register("OrderPlaced", ORDER_PLACED_V2)
    registry.set_compatibility("OrderPlaced", FULL)
    shown = registry.as_dict()
    assert json.loads(json.dumps(shown)) == shown
    assert shown == {
        "default_compatibility": "BACKWARD",
        "subjects": {
            "OrderPlaced": {
                "compatibility": "FULL",
                "versions": [
                    {"version": 1, "name": "OrderPlaced.v1", "schema": ORDER_PLACED_V1},
                    {"version": 2, "name": "OrderPlaced.v2", "schema": ORDER_PLACED_V2},
                ],
            }
        },
    }


def test_two_registries_share_nothing() -> None:
    a, b = SchemaRegistry(), SchemaRegistry()
    a.register("OrderPlaced", ORDER_PLACED_V1)
    a.set_default_compatibility(NONE)
    assert b.subjects() == []
    assert b.default_compatibility is BACKWARD


# --- versioned names ------------------------------------------------------------------------------


def test_versioned_names_round_trip() -> None:
    assert versioned("OrderPlaced", 2) == "OrderPlaced.v2"
    assert parse_versioned("OrderPlaced.v2") == ("OrderPlaced", 2)
    assert parse_versioned("shop.OrderPlaced.v12") == ("shop.OrderPlaced", 12)
    assert parse_versioned(versioned("Order.v1", 3)) == ("Order.v1", 3)


@pytest.mark.parametrize(
    "name",
    ["OrderPlaced", "OrderPlaced.v0", "OrderPlaced.v01", ".v2", "OrderPlaced.2", "OrderPlaced.vx"],
)
def test_parse_versioned_rejects_names_without_a_version(name: str) -> None:
    with pytest.raises(ValueError, match=r"is not a versioned event type like 'OrderPlaced\.v2'"):
        parse_versioned(name)


def test_versioned_rejects_bad_versions() -> None:
    with pytest.raises(ValueError, match="version must be an integer >= 1"):
        versioned("OrderPlaced", 0)
    with pytest.raises(ValueError, match="version must be an integer >= 1"):
        versioned("OrderPlaced", True)


# --- validate(): the writer's check ---------------------------------------------------------------


def test_a_valid_order_has_no_problems() -> None:
    assert validate(ORDER_PLACED_V1, ORDER) == []


def test_validate_names_every_problem() -> None:
    payload = {"order_id": "o-1", "customer_id": True, "items": "sku-1", "total": "19.50", "x": 1}
    assert validate(ORDER_PLACED_V1, payload) == [
        "missing required field 'timestamp'",
        "field 'customer_id' must be integer, got boolean",
        "field 'items' must be array, got string",
        "field 'total' must be number, got string",
    ]


def test_validate_rejects_unexpected_fields_only_when_closed() -> None:
    closed = {**ORDER_PLACED_V1, "additionalProperties": False}
    assert validate(ORDER_PLACED_V1, {**ORDER, "x": 1}) == []
    assert validate(closed, {**ORDER, "x": 1}) == ["unexpected field 'x'"]


def test_validate_requires_a_field_that_has_a_default() -> None:
    # A default is for readers; the writer still has to send a required field.
    schema = obj({"currency": {"type": "string", "default": "USD"}})
    assert validate(schema, {}) == ["missing required field 'currency'"]
    assert read_payload(schema, {}) == ({"currency": "USD"}, [])


def test_validate_follows_json_number_rules() -> None:
    schema = obj({"i": "integer", "n": "number", "b": "boolean"})
    assert validate(schema, {"i": 2.0, "n": 3, "b": False}) == []
    assert validate(schema, {"i": 2.5, "n": False, "b": 0}) == [
        "field 'i' must be integer, got number",
        "field 'n' must be number, got boolean",
        "field 'b' must be boolean, got integer",
    ]


def test_validate_reports_a_payload_that_is_not_an_object() -> None:
    assert validate(ORDER_PLACED_V1, ["o-1"]) == ["payload must be object, got array"]
    assert validate(ORDER_PLACED_V1, None) == ["payload must be object, got null"]
    assert read_payload(ORDER_PLACED_V1, "x") == ("x", ["payload must be object, got string"])


def test_read_payload_returns_the_same_object_when_nothing_is_missing() -> None:
    payload = {**ORDER, "currency": "EUR"}
    assert read_payload(ORDER_PLACED_V2, payload)[0] is payload


def test_read_payload_copies_mutable_defaults() -> None:
    schema = obj(optional={"tags": {"type": "array", "default": []}})
    first, _ = read_payload(schema, {})
    first["tags"].append("x")
    assert read_payload(schema, {}) == ({"tags": []}, [])


# --- check_schema(): the supported subset ---------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ([], "$: schema must be an object, got array"),
        ({"properties": {}}, "$: missing 'type'"),
        ({"type": "string"}, "$.type: the top level must be \"object\", got 'string'"),
        (
            {"type": ["object", "null"]},
            "$.type: the top level must be \"object\", got ['object', 'null']",
        ),
        (
            {"type": "object", "properties": {"total": {"type": "float"}}},
            "$.properties.total.type: unknown type 'float' (expected one of string, integer, "
            "number, boolean, array, object)",
        ),
        (
            {"type": "object", "properties": {"a": {"type": ["string", "integer"]}}},
            '$.properties.a.type: must be a type name or [type, "null"], '
            "got ['string', 'integer']",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string", "format": "uuid"}}},
            "$.properties.a: unsupported keyword 'format' (supported: additionalProperties, "
            "default, description, properties, required, title, type)",
        ),
        (
            {"type": "object", "oneOf": []},
            "$: unsupported keyword 'oneOf' (supported: additionalProperties, description, "
            "properties, required, title, type)",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string", "required": ["x"]}}},
            "$.properties.a.required: only allowed when type is object",
        ),
        ({"type": "object", "required": ["a"]}, "$.required: 'a' is not a declared property"),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a", "a"]},
            "$.required: 'a' is listed twice",
        ),
        ({"type": "object", "required": "a"}, "$.required: must be a list of property names"),
        (
            {"type": "object", "additionalProperties": {"type": "string"}},
            "$.additionalProperties: must be true or false (schemas are not supported), "
            "got {'type': 'string'}",
        ),
        ({"type": "object", "properties": []}, "$.properties: must be an object, got array"),
        (
            {"type": "object", "properties": {"a": "string"}},
            "$.properties.a: must be an object, got string",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "array", "default": [{1, 2}]}}},
            "$.properties.a.default: [{1, 2}] is not a JSON value",
        ),
        (
            {"type": "object", "properties": {"n": {"type": "integer", "default": "0"}}},
            "$.properties.n.default: '0' is not integer, got string",
        ),
        (
            {
                "type": "object",
                "properties": {
                    "c": {
                        "type": "object",
                        "properties": {
                            "x": {"type": "object", "properties": {"y": {"type": "date"}}}
                        },
                    }
                },
            },
            "$.properties.c.properties.x.properties.y.type: unknown type 'date' (expected one of "
            "string, integer, number, boolean, array, object)",
        ),
        (
            {
                "type": "object",
                "properties": {
                    "c": {
                        "type": "object",
                        "properties": {"x": {"type": "integer"}},
                        "required": ["x"],
                        "default": {},
                    }
                },
            },
            "$.properties.c.default: missing required field 'x'",
        ),
    ],
)
def test_a_schema_outside_the_subset_is_rejected_with_its_path(schema: Any, problem: str) -> None:
    with pytest.raises(SchemaError) as caught:
        check_schema(schema)
    assert caught.value.problems == [problem]
    assert str(caught.value) == f"invalid schema: {problem}"


def test_check_schema_reports_every_problem() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "float"}, "b": {}}, "required": ["c"]}
    with pytest.raises(SchemaError) as caught:
        check_schema(schema)
    assert caught.value.problems == [
        "$.properties.a.type: unknown type 'float' (expected one of string, integer, number, "
        "boolean, array, object)",
        "$.properties.b: missing 'type'",
        "$.required: 'c' is not a declared property",
    ]


def test_check_schema_accepts_the_whole_subset() -> None:
    check_schema(ORDER_PLACED_V2)
    check_schema(
        {
            "type": "object",
            "title": "Everything",
            "description": "One of each.",
            "properties": {
                "s": {"type": "string", "default": "x", "description": "a string"},
                "i": {"type": ["integer", "null"], "default": None},
                "n": {"type": ["null", "number"], "default": 1},
                "b": {"type": "boolean", "default": False},
                "a": {"type": "array", "default": [1, "two"]},
                "free": {"type": "object"},
                "o": {
                    "type": ["object", "null"],
                    "properties": {"x": {"type": "integer"}},
                    "required": ["x"],
                    "additionalProperties": False,
                    "default": {"x": 1},
                },
            },
            "required": ["s", "o"],
            "additionalProperties": False,
        }
    )


# --- properties over random schemas ---------------------------------------------------------------

NAMES = ["a", "b", "c"]
SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "string": st.text("xy", max_size=3),
    "integer": st.integers(-3, 3),
    "number": st.integers(-3, 3) | st.floats(-3, 3, allow_nan=False),
    "boolean": st.booleans(),
    "array": st.lists(st.integers(), max_size=2),
    "object": st.dictionaries(
        st.sampled_from(NAMES), st.integers() | st.text("xy", max_size=2), max_size=2
    ),
    "null": st.none(),
}


def payloads(node: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """Objects a writer using ``node`` may send: its declared fields and no others."""
    props = node.get("properties")
    if props is None and node.get("additionalProperties", True) is not False:
        return SCALARS["object"]  # free-form: anything
    props = props or {}
    required = set(node.get("required", ()))
    return st.fixed_dictionaries(
        {n: values(p) for n, p in props.items() if n in required},
        optional={n: values(p) for n, p in props.items() if n not in required},
    )


def values(node: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    types = [node["type"]] if isinstance(node["type"], str) else node["type"]
    return st.one_of([payloads(node) if t == "object" else SCALARS[t] for t in types])


@st.composite
def property_schemas(draw: st.DrawFn, depth: int) -> dict[str, Any]:
    t = draw(st.sampled_from(TYPES))
    node: dict[str, Any] = {}
    if t == "object" and depth and draw(st.booleans()):
        node.update(draw(object_schemas(depth - 1)))  # else a free-form object
    node["type"] = [t, "null"] if draw(st.booleans()) else t
    if draw(st.integers(0, 3)) == 0:
        node["default"] = draw(values(node))
    return node


@st.composite
def object_schemas(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=len(NAMES)))
    props = {n: draw(property_schemas(depth)) for n in names}
    node: dict[str, Any] = {"type": "object", "properties": props}
    node["required"] = [n for n in names if draw(st.booleans())]
    if draw(st.booleans()):
        node["additionalProperties"] = draw(st.booleans())
    return node


flat_schemas = object_schemas(depth=0)
# No deadline: a loaded CI machine should not turn a slow example into a failure.
PROPERTY_SETTINGS = settings(deadline=None)
nested_schemas = object_schemas(depth=2)


@PROPERTY_SETTINGS
@given(flat_schemas)
def test_a_flat_schema_is_compatible_with_itself_in_every_mode(schema: dict[str, Any]) -> None:
    check_schema(schema)
    for mode in ALL_MODES:
        assert check_compatibility(schema, schema, mode) == []


@PROPERTY_SETTINGS
@given(nested_schemas)
def test_a_nested_schema_is_compatible_with_itself_in_every_mode(schema: dict[str, Any]) -> None:
    for mode in ALL_MODES:
        assert check_compatibility(schema, schema, mode) == []


@PROPERTY_SETTINGS
@given(flat_schemas, flat_schemas)
def test_full_compatible_iff_backward_and_forward_compatible(
    new: dict[str, Any], old: dict[str, Any]
) -> None:
    backward = check_compatibility(new, old, BACKWARD)
    forward = check_compatibility(new, old, FORWARD)
    full = check_compatibility(new, old, FULL)
    assert (full == []) == (backward == [] and forward == [])
    assert set(full) == set(backward) | set(forward)
    assert check_compatibility(new, old, "FULL_TRANSITIVE") == full


@PROPERTY_SETTINGS
@given(nested_schemas, nested_schemas, st.data())
def test_a_compatible_reader_reads_everything_the_writer_may_send(
    new: dict[str, Any], old: dict[str, Any], data: st.DataObject
) -> None:
    """The rules are sound: what they accept, a consumer can really read."""
    if check_compatibility(new, old, BACKWARD) == []:
        written = data.draw(payloads(old), label="old event")
        assert validate(old, written) == []
        assert read_payload(new, written)[1] == []
    if check_compatibility(new, old, FORWARD) == []:
        written = data.draw(payloads(new), label="new event")
        assert validate(new, written) == []
        assert read_payload(old, written)[1] == []
