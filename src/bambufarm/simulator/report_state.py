"""Change tracking for a simulated printer's report, and its full and delta serialisations.

The printer writes report values through `set(path, value)`; a write that changes nothing
costs one comparison and is not recorded. Publishing a delta then touches only the recorded
paths, so an idle printer that changed nothing costs nothing to report, and a full report is
serialised once per change rather than once per publication.
"""

from itertools import pairwise
from typing import Any

import orjson

from .report_builder import ById, Path

_FULL_HEAD = b'{"print":{"command":"push_status","msg":0,"sequence_id":"'


def _find(items: list[dict[str, Any]], ident: str | int) -> dict[str, Any]:
    for item in items:
        if item.get("id") == ident:
            return item
    raise LookupError(f"no element with id {ident!r} in report list")


class ReportState:
    """The `print` object of a printer's reports, with the paths changed since last published."""

    __slots__ = ("_body", "_changed", "_once", "changes", "data")

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self._changed: set[Path] = set()
        self._once: dict[str, Any] = {}
        self._body: bytes | None = None  # serialised `data`, valid until the next change
        self.changes = 0  # count of recorded changes, for callers that ask "did that change it?"

    @property
    def dirty(self) -> bool:
        """True when something changed (or a one-shot key waits) since the last publication."""
        return bool(self._changed or self._once)

    def get(self, path: Path) -> Any:
        """The current value at `path`."""
        node: Any = self.data
        for seg in path:
            node = _find(node, seg.id) if isinstance(seg, ById) else node[seg]
        return node

    def set(self, path: Path, value: Any) -> bool:
        """Write `value` at `path`; record the change and return True if it differs."""
        parent: Any = self.data
        for seg in path[:-1]:
            parent = _find(parent, seg.id) if isinstance(seg, ById) else parent[seg]
        last = path[-1]
        if isinstance(last, ById):
            items: list[dict[str, Any]] = parent
            for index, item in enumerate(items):
                if item.get("id") == last.id:
                    if item == value:
                        return False
                    items[index] = value
                    break
            else:
                raise LookupError(f"no element with id {last.id!r} in report list")
        else:
            if parent.get(last, _MISSING) == value:
                return False
            parent[last] = value
        self._changed.add(path)
        self._body = None
        self.changes += 1
        return True

    def put(self, key: str, value: Any) -> bool:
        """`set` for a top-level key: the common case, without path walking."""
        data = self.data
        if data.get(key, _MISSING) == value:
            return False
        data[key] = value
        self._changed.add((key,))
        self._body = None
        self.changes += 1
        return True

    def once(self, key: str, value: Any) -> None:
        """Add `key` to the next publication only (e.g. the job-start `ams_mapping`)."""
        self._once[key] = value
        self.changes += 1

    def full(self, sequence_id: int) -> bytes:
        """The whole report (`msg: 0`); clears the recorded changes."""
        self._changed.clear()
        if self._once:
            body = orjson.dumps({**self.data, **self._once})
            self._once.clear()
        else:
            if self._body is None:
                self._body = orjson.dumps(self.data)
            body = self._body
        # Splice the envelope in front of the cached body instead of re-serialising the state.
        return b'%s%d",%s}' % (_FULL_HEAD, sequence_id, body[1:])

    def delta(self, sequence_id: int) -> bytes:
        """Only what changed since the last publication (`msg: 1`); clears the changes."""
        report: dict[str, Any] = {
            "command": "push_status",
            "msg": 1,
            "sequence_id": str(sequence_id),
        }
        if self._changed:
            included: set[Path] = set()
            # Parents before children: a child of an included subtree is already in it.
            for path in sorted(self._changed, key=len):
                if any(path[:i] in included for i in range(1, len(path))):
                    continue
                included.add(path)
                self._insert(report, path)
            self._changed.clear()
        if self._once:
            report.update(self._once)
            self._once.clear()
        return orjson.dumps({"print": report})

    def _insert(self, report: dict[str, Any], path: Path) -> None:
        # Walk the state and the report side by side, creating only the report's containers,
        # so that the report never aliases a state container it then writes into.
        src: Any = self.data
        dst: Any = report
        for seg, nxt in pairwise(path):
            if isinstance(seg, ById):
                src = _find(src, seg.id)
                dst = _entry(dst, seg.id)
            else:
                src = src[seg]
                dst = dst.setdefault(seg, [] if isinstance(nxt, ById) else {})
        last = path[-1]
        if isinstance(last, ById):
            entry = _entry(dst, last.id)
            entry.update(_find(src, last.id))
        else:
            dst[last] = src[last]


def _entry(items: list[dict[str, Any]], ident: str | int) -> dict[str, Any]:
    for item in items:
        if item["id"] == ident:
            return item
    item = {"id": ident}
    items.append(item)
    return item


class _Missing:
    __slots__ = ()


_MISSING = _Missing()
