"""Dictionary payloads: integer keys that stand for field names (key compaction).

Constrained devices send ``{"timestamp": ..., "0": 412.5, "1": 0.103}`` (or readings with
``"name": 0``) with the header ``Telemetry-Dictionary: meter-v2``, and ``[dictionaries.meter-v2]``
in the config file says that 0 is ``power_w`` and 1 is ``energy_kwh``. The names are put
back before validation, so everything downstream sees ordinary field names.

Nothing is guessed: a dictionary the config does not know dead-letters the whole message
(``unknown_dictionary``), an index the dictionary does not hold rejects that reading
(``unknown_key``); a message without the header is decoded exactly as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from telemetry_core.errors import ConfigError
from telemetry_core.identifiers import IdentifierError, check_field, check_name
from telemetry_core.reasons import BAD_PAYLOAD, UNKNOWN_DICTIONARY, UNKNOWN_KEY, Reject

HEADER = "Telemetry-Dictionary"
# Keys a reading object may carry that are never indexes (and never mapped).
NOT_MAPPED = frozenset(("timestamp", "site_id", "device_id", "readings"))

Dictionary = Mapping[int, str]
MAX_DIGITS = 18
NO_SUCH_INDEX = -1  # what a longer digit string stands for: in no dictionary


def parse_dictionaries(raw: Any) -> dict[str, dict[int, str]]:
    """``[dictionaries.<name>]`` tables of ``"<non-negative integer>" = "<field name>"``;
    a bad name, key or value is a one-line ``ConfigError`` naming the dictionary and key."""
    if not isinstance(raw, dict):
        raise ConfigError("[dictionaries] must be a table of dictionaries")
    out: dict[str, dict[int, str]] = {}
    for name, table in raw.items():
        where = f"[dictionaries.{name}]"
        try:
            check_name(name, "dictionary name")
        except IdentifierError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if not isinstance(table, dict):
            raise ConfigError(f'{where} must be a table of "<index>" = "<field name>"')
        entries: dict[int, str] = {}
        for key, value in table.items():
            index = index_of(key)
            if index is None or str(index) != key:
                raise ConfigError(
                    f"{where} key {key!r} must be a non-negative integer of at most {MAX_DIGITS} "
                    f'digits, written as a string without leading zeros, e.g. "0"'
                )
            if not isinstance(value, str):
                raise ConfigError(f"{where} key {key!r}: value must be a field name string")
            try:
                check_field(value, "field name")
            except IdentifierError as exc:
                raise ConfigError(f"{where} key {key!r}: {exc}") from None
            entries[index] = value
        out[name] = entries
    return out


def index_of(key: Any) -> int | None:
    """The integer a key or a reading's name stands for: an int (msgpack may carry them,
    JSON names may be numbers) or a string of ASCII digits (JSON object keys); else None."""
    if type(key) is int:
        return key if key >= 0 else None
    if type(key) is str and key.isascii() and key.isdigit():
        # A digit string too long for any index is still an index, one no dictionary holds
        # (and int() of thousands of digits raises: hostile input must not get that far).
        return int(key) if len(key) <= MAX_DIGITS else NO_SUCH_INDEX
    return None


def header_value(headers: dict[str, str] | None) -> str | None:
    """The ``Telemetry-Dictionary`` header (name case-insensitive), stripped; None if absent."""
    if not headers:
        return None
    value = headers.get(HEADER)
    if value is None:
        for key, val in headers.items():
            if key.lower() == "telemetry-dictionary":
                value = val
                break
    return value.strip() if value is not None else None


def select(
    headers: dict[str, str] | None, dictionaries: Mapping[str, Dictionary]
) -> Dictionary | None:
    """The dictionary a message names, None when it names none; ``Reject`` when the
    config does not know it (the whole message is refused: no key of it can be read)."""
    name = header_value(headers)
    if name is None:
        return None
    found = dictionaries.get(name)
    if found is None:
        known = ", ".join(sorted(dictionaries)) or "none configured"
        raise Reject(
            UNKNOWN_DICTIONARY,
            f"dictionary {name[:64]!r} (header {HEADER}) is not in the config's "
            f"[dictionaries] ({known[:200]})",
        )
    return found


def _name(dictionary: Dictionary, index: int, key: Any, where: str) -> str:
    name = dictionary.get(index)
    if name is None:
        shown = str(key) if len(str(key)) <= 24 else f"{str(key)[:20]}..."
        raise Reject(UNKNOWN_KEY, f"{where} {shown} is not in the message's dictionary")
    return name


def map_flat(obj: Any, dictionary: Dictionary) -> Any:
    """A flat reading with its integer keys replaced by field names (other keys as they
    are). Not an object: returned unchanged, for the decoder to reject as usual."""
    if not isinstance(obj, dict):
        return obj
    out: dict[Any, Any] = {}
    for key, value in obj.items():
        index = None if key in NOT_MAPPED else index_of(key)
        name = key if index is None else _name(dictionary, index, key, "key")
        if name in out:
            raise Reject(BAD_PAYLOAD, f"key {key!r} maps to {name!r}, which the reading also names")
        out[name] = value
    return out


def map_item(item: Any, dictionary: Dictionary) -> Any:
    """An entry of ``readings`` with an integer ``name`` replaced by its field name."""
    if not isinstance(item, dict) or "name" not in item:
        return item
    index = index_of(item["name"])
    if index is None:
        return item
    return {**item, "name": _name(dictionary, index, item["name"], "reading name")}
