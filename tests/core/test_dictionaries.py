"""Dictionary payloads (key compaction): ``[dictionaries.<name>]`` in the config, the header
``Telemetry-Dictionary`` on a message, integer keys and names mapped before validation;
an unknown dictionary or index is refused with its reason, never guessed."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry_core import reasons
from telemetry_core.config import ConfigError, parse_config
from telemetry_core.decode import decode_message

NS = 10**9
NOW = 1_795_000_000 * NS
T_S = NOW // NS - 60
T = T_S * NS
SUBJ = "iot.energy.site-a.meter-7"
HEADER = {"Telemetry-Dictionary": "meter-v2"}

TOML = """
[dictionaries.meter-v2]
"0" = "power_w"
"1" = "energy_kwh"
"7" = "temp.c"
"""
DICTS = parse_config(tomllib.loads(TOML)).dictionaries


def run(payload, headers=HEADER, dictionaries=DICTS):
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return decode_message(SUBJ, data, headers, NOW, dictionaries=dictionaries)


def points(result):
    return sorted((p[3], p[4], p[5]) for p in result.points)


def test_config_maps_indexes_to_field_names():
    assert DICTS == {"meter-v2": {0: "power_w", 1: "energy_kwh", 7: "temp.c"}}
    assert parse_config({}).dictionaries == {}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"timestamp": T_S, "0": 412.5, "1": 0.103},
         [("energy_kwh", T, 0.103), ("power_w", T, 412.5)]),
        # named keys beside indexes stay as they are; site_id/device_id are not mapped
        ({"timestamp": T_S, "site_id": "site-a", "0": 1, "rh": 40},
         [("power_w", T, 1.0), ("rh", T, 40.0)]),
        ([{"timestamp": T_S, "0": 1}, {"timestamp": T_S + 1, "7": 21.5}],
         [("power_w", T, 1.0), ("temp.c", T + NS, 21.5)]),
        # the seed-003 form: integer names (and digit strings) of readings
        ({"timestamp": T_S, "readings": [{"name": 0, "value": 5}, {"name": "1", "value": 2},
                                         {"name": "rh", "value": 40}]},
         [("energy_kwh", T, 2.0), ("power_w", T, 5.0), ("rh", T, 40.0)]),
    ],
)  # fmt: skip
def test_dictionary_payload_is_stored_under_field_names(payload, expected):
    result = run(payload)
    assert result.rejections == []
    assert points(result) == expected


def test_msgpack_integer_keys_are_mapped():
    data = msgspec.msgpack.encode({"timestamp": T_S, 0: 3.5, 1: 1})
    result = run(data, {**HEADER, "Content-Type": "application/msgpack"})
    assert result.rejections == []
    assert points(result) == [("energy_kwh", T, 1.0), ("power_w", T, 3.5)]


def test_header_name_is_case_insensitive():
    result = run({"timestamp": T_S, "0": 1}, {"telemetry-dictionary": "meter-v2"})
    assert points(result) == [("power_w", T, 1.0)]


@pytest.mark.parametrize("dictionaries", [DICTS, {}, None])
def test_unknown_dictionary_refuses_the_whole_message(dictionaries):
    result = run(
        [{"timestamp": T_S, "0": 1}, {"timestamp": T_S, "power_w": 2}],
        {"Telemetry-Dictionary": "meter-v9"},
        dictionaries,
    )
    assert result.points == [] and result.readings == 0
    [rej] = result.rejections
    assert (rej.index, rej.reason) == (None, reasons.UNKNOWN_DICTIONARY)
    assert "meter-v9" in rej.error and result.outcome == "dead_lettered"


def test_unknown_index_rejects_that_reading_only():
    result = run(
        [
            {"timestamp": T_S, "0": 1},
            {"timestamp": T_S, "0": 2, "9": 3},  # 9 is not in meter-v2
            {"timestamp": T_S, "readings": [{"name": 1, "value": 4}, {"name": 42, "value": 5}]},
        ]
    )
    assert points(result) == [("energy_kwh", T, 4.0), ("power_w", T, 1.0)]
    assert [(r.index, r.reason) for r in result.rejections] == [
        (1, reasons.UNKNOWN_KEY),
        (3, reasons.UNKNOWN_KEY),
    ]
    assert "9" in result.rejections[0].error and "42" in result.rejections[1].error
    assert result.outcome == "partial"


def test_single_reading_with_unknown_index_is_a_dead_letter():
    result = run({"timestamp": T_S, "3": 1})
    assert [(r.index, r.reason) for r in result.rejections] == [(0, reasons.UNKNOWN_KEY)]
    assert result.points == []


def test_index_and_its_name_in_one_reading_is_not_guessed():
    result = run({"timestamp": T_S, "0": 1, "power_w": 2})
    assert [r.reason for r in result.rejections] == [reasons.BAD_PAYLOAD]
    assert "power_w" in result.rejections[0].error


def test_without_header_nothing_is_mapped():
    # digit keys are then plain field names, as before dictionaries existed
    result = run({"timestamp": T_S, "0": 1}, headers=None)
    assert points(result) == [("0", T, 1.0)]


def test_mapping_happens_before_validation():
    # the mapped name is validated like any other: a NaN under index 0 is power_w's NaN
    result = run(b'{"timestamp": %d, "0": NaN}' % T_S)
    [rej] = result.rejections
    assert rej.reason == reasons.NON_FINITE and "power_w" in rej.error


def test_reasons_are_listed():
    assert {reasons.UNKNOWN_DICTIONARY, reasons.UNKNOWN_KEY} <= set(reasons.REASONS)
    assert (reasons.UNKNOWN_DICTIONARY, reasons.UNKNOWN_KEY) == (
        "unknown_dictionary",
        "unknown_key",
    )


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[dictionaries.meter-v2]\n"x" = "power_w"', r"\[dictionaries.meter-v2\] key 'x'"),
        ('[dictionaries.meter-v2]\n"-1" = "power_w"', r"\[dictionaries.meter-v2\] key '-1'"),
        ('[dictionaries.meter-v2]\n"01" = "power_w"', r"\[dictionaries.meter-v2\] key '01'"),
        ('[dictionaries.meter-v2]\n"0" = "power w"', r"\[dictionaries.meter-v2\] key '0'.*field"),
        ('[dictionaries.meter-v2]\n"0" = 5', r"\[dictionaries.meter-v2\] key '0'"),
        ('[dictionaries."bad name"]\n"0" = "a"', r"\[dictionaries.bad name\]"),
        ("[dictionaries]\nmeter = 3", r"\[dictionaries.meter\] must be a table"),
        ("dictionaries = 3", r"\[dictionaries\] must be a table"),
    ],
)
def test_config_errors_name_dictionary_and_key(toml, message):
    with pytest.raises(ConfigError, match=message) as err:
        parse_config(tomllib.loads(toml))
    assert "\n" not in str(err.value)


README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_config_example_defines_the_dictionary():
    [block] = [
        b
        for b in re.findall(r"```toml\n(.*?)```", README.read_text(), re.S)
        if "[dictionaries." in b
    ]
    cfg = parse_config(tomllib.loads(block))
    assert cfg.dictionaries["meter-v2"] == {0: "power_w", 1: "energy_kwh"}


def test_readme_lists_every_dead_letter_reason():
    text = README.read_text()
    missing = [r for r in reasons.REASONS if f"`{r}`" not in text]
    assert not missing, missing


def test_absurdly_long_index_is_an_unknown_key_not_a_crash():
    key = "9" * 5000  # int() refuses strings this long
    result = run(
        [{"timestamp": T_S, key: 1}, {"timestamp": T_S, "readings": [{"name": key, "value": 1}]}]
    )
    assert [r.reason for r in result.rejections] == [reasons.UNKNOWN_KEY] * 2
    assert all(len(r.error) < 100 for r in result.rejections)
    with pytest.raises(ConfigError, match="at most 18 digits"):
        parse_config({"dictionaries": {"d": {"1" + "0" * 18: "a"}}})


_keys = st.one_of(st.sampled_from(["0", "1", "7", "9", "timestamp", "site_id", "power_w"]),
                  st.text(max_size=6), st.integers(-3, 12).map(str))  # fmt: skip
_leaf = st.one_of(st.none(), st.booleans(), st.integers(-3, 12), st.floats(), st.text(max_size=6))
_reading = st.dictionaries(_keys, st.one_of(_leaf, st.just(T_S)), max_size=5) | st.builds(
    lambda items: {"timestamp": T_S, "readings": items},
    st.lists(st.dictionaries(st.sampled_from(["name", "value", "timestamp"]), _leaf), max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(
    payload=st.one_of(_reading, st.lists(_reading, max_size=4)),
    name=st.sampled_from(["meter-v2", "meter-v9", "", " meter-v2 "]),
    msgpack=st.booleans(),
)
def test_dictionary_payloads_never_raise_and_nothing_vanishes(payload, name, msgpack):
    headers = {"Telemetry-Dictionary": name}
    if msgpack:
        headers["Content-Type"] = "application/msgpack"
        data = msgspec.msgpack.encode(payload)
    else:
        data = json.dumps(payload).encode()
    result = decode_message(SUBJ, data, headers, NOW, dictionaries=DICTS)
    assert result.points or result.rejections
    for point in result.points:
        assert point[3] in {"power_w", "energy_kwh", "temp.c"} or not point[3].isdigit()
    for r in result.rejections:
        assert r.reason in reasons.REASONS and r.error
