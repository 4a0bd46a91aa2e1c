"""Deep-merging a `print` delta into the printer's wire object (protocol.md §1.4).

The rules, copy-on-write (no dict or list passed in is ever modified; untouched subtrees are
shared between the old and the new object, which is what lets `ams` tell unchanged trays by
identity):

* objects merge key by key, recursively;
* lists of objects that all carry an `id` (`ams.ams[]`, each unit's `tray[]`, `vir_slot[]`,
  `device.extruder.info[]`) merge element by element on `id`; new ids are appended;
* a tray object holding only `id` (and `state`) is the printer saying the tray's metadata was
  cleared (spool removed, OBN 12.01.03): it replaces the tray instead of merging into it;
* snapshot lists (`hms`, `stg`, `s_obj`, `lights_report`) and all other values are replaced.
"""

from collections.abc import Mapping
from typing import Any

SNAPSHOT_KEYS = frozenset({"hms", "stg", "s_obj", "lights_report"})
TRAY_KEYS = frozenset({"tray", "vir_slot", "vt_tray"})
_CLEARED_TRAY_KEYS = frozenset({"id", "state"})
# Real reports nest 5 levels deep (print.ams.ams[].tray[].cols); past 16 a delta's value
# replaces instead of merging, so a hostile payload cannot exhaust the recursion limit.
MAX_MERGE_DEPTH = 16


def merge_print(old: Mapping[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    """A new object: `old` with `delta` deep-merged into it."""
    return _merge_object(old, delta, 1)


def _merge_object(old: Mapping[str, Any], delta: Mapping[str, Any], depth: int) -> dict[str, Any]:
    """Merge two objects: scalars overwrite in one C-level update, containers recurse."""
    out = {**old, **delta}
    if depth >= MAX_MERGE_DEPTH:
        return out
    for key, value in delta.items():
        kind = type(value)
        if kind is dict:
            current = old.get(key)
            if type(current) is dict and not (
                key in TRAY_KEYS and value.keys() <= _CLEARED_TRAY_KEYS
            ):
                out[key] = _merge_object(current, value, depth + 1)
        elif kind is list and value and key not in SNAPSHOT_KEYS:
            current = old.get(key)
            if type(current) is list:
                out[key] = _merge_list(current, value, key in TRAY_KEYS, depth + 1)
    return out


def _merge_list(old: list[Any], delta: list[Any], trays: bool, depth: int) -> list[Any]:
    """Merge lists of objects on `id`; any other list is replaced by `delta`."""
    positions: dict[str, int] = {}
    for index, element in enumerate(old):
        key = _id_key(element)
        if key is None:
            return delta
        positions[key] = index
    out = list(old)
    for item in delta:
        key = _id_key(item)
        if key is None:
            return delta
        position = positions.get(key)
        if position is None:
            positions[key] = len(out)
            out.append(item)
        elif trays and item.keys() <= _CLEARED_TRAY_KEYS:
            out[position] = item
        else:
            out[position] = _merge_object(out[position], item, depth)
    return out


def _id_key(item: object) -> str | None:
    """The element's `id` as a string ("0" and 0 name the same tray), or None without one."""
    if type(item) is not dict:
        return None
    value = item.get("id")
    if type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    return None
