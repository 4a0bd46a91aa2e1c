"""A WebSocket client's queue (`api.ws_hub.Watcher`): shared change maps, coalescing, bounds.

No sockets: ticks are built by hand as the hub builds them from the event bus.
"""

from hypothesis import given
from hypothesis import strategies as st

from bambufarm.api.ws_hub import MAX_PENDING_TICKS, Tick, Watcher

PARTS = ("job", "temperatures", "fans", "connection", "ams", "hms")


def _tick(
    changes: dict[str, set[str]] | None = None,
    added: set[str] | None = None,
    events: list[tuple[str, bytes]] | None = None,
) -> Tick:
    return Tick(
        {serial: frozenset(parts) for serial, parts in (changes or {}).items()},
        frozenset(added or ()),
        tuple(events or ()),
    )


def _all() -> Watcher:
    watcher = Watcher()
    watcher.all_printers = True
    return watcher


def test_an_up_to_date_client_shares_the_ticks_map() -> None:
    watcher = _all()
    tick = _tick({"A": {"job"}, "B": {"temperatures"}})
    watcher.offer(tick)
    assert watcher.ready.is_set()
    # The very map the hub built: its JSON is built once for every such client.
    assert watcher.take_changes() is tick.changes
    assert watcher.take_changes() is None


def test_a_client_behind_gets_the_union_of_parts_per_printer() -> None:
    watcher = _all()
    watcher.offer(_tick({"A": {"job"}}))
    watcher.offer(_tick({"A": {"temperatures"}, "B": {"connection"}}))
    watcher.offer(_tick({"A": {"job", "fans"}}))
    assert watcher.take_changes() == {
        "A": frozenset({"job", "temperatures", "fans"}),
        "B": frozenset({"connection"}),
    }


@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["A", "B", "C", "D"]),
            st.sets(st.sampled_from(PARTS), min_size=1),
            min_size=1,
        ),
        min_size=1,
        max_size=60,
    )
)
def test_a_stuck_client_holds_one_entry_per_printer_and_loses_no_part(
    ticks: list[dict[str, set[str]]],
) -> None:
    watcher = _all()
    for changes in ticks:
        watcher.offer(_tick(changes))
    assert watcher.backlog <= MAX_PENDING_TICKS
    expected: dict[str, set[str]] = {}
    for changes in ticks:
        for serial, parts in changes.items():
            expected.setdefault(serial, set()).update(parts)
    assert watcher.pending() == {s: frozenset(p) for s, p in expected.items()}
    assert watcher.take_changes() == {s: frozenset(p) for s, p in expected.items()}


def test_one_printer_clients_get_only_their_printer() -> None:
    watcher = Watcher()
    watcher.serials.add("B")
    watcher.offer(_tick({"A": {"job"}}, added={"A"}, events=[("A", b"{}")]))
    assert not watcher.ready.is_set()
    assert watcher.take_changes() is None
    watcher.offer(_tick({"A": {"job"}, "B": {"fans"}}, added={"B"}, events=[("B", b"{}")]))
    assert watcher.ready.is_set()
    assert watcher.take_changes() == {"B": frozenset({"fans"})}
    assert watcher.full == {"B"}
    assert list(watcher.events) == [b"{}"]


def test_a_client_following_nothing_gets_nothing() -> None:
    watcher = Watcher()
    watcher.offer(_tick({"A": {"job"}}, added={"A"}, events=[("A", b"{}")]))
    assert not watcher.ready.is_set()
    assert watcher.pending() == {}


def test_the_event_queue_is_bounded_and_counts_what_it_drops() -> None:
    watcher = Watcher(event_queue=3)
    watcher.all_printers = True
    watcher.offer(_tick(events=[("A", str(i).encode()) for i in range(5)]))
    assert list(watcher.events) == [b"2", b"3", b"4"]
    assert watcher.dropped == 2


def test_unsubscribing_forgets_what_was_queued_for_those_printers() -> None:
    watcher = _all()
    watcher.offer(_tick({"A": {"job"}, "B": {"fans"}}, added={"A", "B"}))
    watcher.all_printers = False
    watcher.serials.add("A")
    watcher.drop_unwanted()
    assert watcher.pending() == {"A": frozenset({"job"})}
    assert watcher.full == {"A"}
