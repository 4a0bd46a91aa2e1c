"""A minimal client view of a printer's `print` object, merged per protocol.md §1.4.

Written independently of the manager's merge so that simulator tests check the simulator
against the protocol text, not against another module of ours: objects merge key by key,
`ams.ams[]` and `tray[]` merge on `id`, every other value (lists included) is replaced.
"""

from collections.abc import Mapping
from typing import Any

_BY_ID = frozenset({"ams", "tray"})


def apply_report(view: Mapping[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
    """The view after one `push_status` body: replaced by a full report, merged by a delta."""
    if body.get("msg") == 0:
        return dict(body)
    return _merge(view, body)


def _merge(old: Mapping[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(old)
    for key, value in delta.items():
        current = out.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            out[key] = _merge(current, value)
        elif key in _BY_ID and isinstance(value, list) and isinstance(current, list):
            merged = {item["id"]: item for item in current}
            for item in value:
                merged[item["id"]] = _merge(merged.get(item["id"], {}), item)
            out[key] = list(merged.values())
        else:
            out[key] = value
    return out
