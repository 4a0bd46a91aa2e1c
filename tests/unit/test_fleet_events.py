"""Fleet events: dict round trip for every kind, hostile dicts, and the bus's queue rules."""

import asyncio
import dataclasses

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bambufarm.fleet.errors import EventError, FleetError
from bambufarm.fleet.events import (
    EVENT_KINDS,
    EVENT_TYPES,
    CommandAcked,
    ConnectionChanged,
    Event,
    EventBus,
    HmsRaised,
    LayerChanged,
    PrinterAdded,
    StateChanged,
    event_from_dict,
)

SERIAL_A = "01P00A000000001"
SERIAL_B = "01P00A000000002"

_FIELD_STRATEGIES: dict[object, st.SearchStrategy[object]] = {
    str: st.text(max_size=40),
    int: st.integers(min_value=-(2**53), max_value=2**53),
    # JSON has no NaN or infinity; the clock never produces them either.
    float: st.floats(allow_nan=False, allow_infinity=False),
    frozenset[str]: st.frozensets(st.text(max_size=20), max_size=8),
}


def _event_strategy(cls: type[Event]) -> st.SearchStrategy[Event]:
    fields = {f.name: _FIELD_STRATEGIES[f.type] for f in dataclasses.fields(cls)}
    return st.fixed_dictionaries(fields).map(lambda values: cls(**values))


ANY_EVENT = st.one_of([_event_strategy(cls) for cls in EVENT_TYPES])


def layer(serial: str, n: int) -> LayerChanged:
    return LayerChanged(serial=serial, at=float(n), layer=n, total=100)


@given(ANY_EVENT)
def test_every_event_survives_a_json_round_trip(event: Event) -> None:
    wire = orjson.dumps(event.to_dict())
    back = event_from_dict(orjson.loads(wire))
    assert back == event
    assert type(back) is type(event)


def test_every_kind_is_registered_once_and_tagged() -> None:
    assert len(EVENT_KINDS) == len(EVENT_TYPES) == 14
    assert all(EVENT_KINDS[cls.kind] is cls for cls in EVENT_TYPES)


def test_state_changed_serialises_fields_sorted() -> None:
    event = StateChanged(serial=SERIAL_A, at=2.5, changed=frozenset({"nozzle", "bed", "ams"}))
    assert event.to_dict() == {
        "kind": "state_changed",
        "serial": SERIAL_A,
        "at": 2.5,
        "changed": ["ams", "bed", "nozzle"],
    }


def test_an_integer_time_reads_back_as_float() -> None:
    event = event_from_dict({"kind": "printer_added", "serial": SERIAL_A, "at": 3})
    assert event == PrinterAdded(serial=SERIAL_A, at=3.0)
    assert isinstance(event.at, float)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"serial": SERIAL_A, "at": 1.0}, "unknown event kind None"),
        ({"kind": "printer_exploded", "serial": SERIAL_A, "at": 1.0}, "unknown event kind"),
        ({"kind": 7, "serial": SERIAL_A, "at": 1.0}, "unknown event kind 7"),
        ({"kind": "printer_added", "at": 1.0}, "has no 'serial'"),
        ({"kind": "printer_added", "serial": 5, "at": 1.0}, "'serial' must be str"),
        ({"kind": "printer_added", "serial": SERIAL_A, "at": "now"}, "'at' must be float"),
        ({"kind": "printer_added", "serial": SERIAL_A, "at": True}, "'at' must be float"),
        (
            {"kind": "layer_changed", "serial": SERIAL_A, "at": 1.0, "layer": 2.5, "total": 9},
            "'layer' must be int",
        ),
        (
            {"kind": "layer_changed", "serial": SERIAL_A, "at": 1.0, "layer": True, "total": 9},
            "'layer' must be int",
        ),
        (
            {"kind": "state_changed", "serial": SERIAL_A, "at": 1.0, "changed": "bed"},
            "'changed' must be",
        ),
        (
            {"kind": "state_changed", "serial": SERIAL_A, "at": 1.0, "changed": [1]},
            "'changed' must be",
        ),
        (
            {"kind": "printer_added", "serial": SERIAL_A, "at": 1.0, "state": "x"},
            "unknown fields ['state']",
        ),
    ],
)
def test_bad_dicts_raise_event_error(data: dict[str, object], message: str) -> None:
    with pytest.raises(EventError, match=message.replace("[", r"\[").replace("]", r"\]")):
        event_from_dict(data)


def test_a_non_mapping_is_refused() -> None:
    with pytest.raises(EventError, match="must be a mapping"):
        event_from_dict(["printer_added"])  # type: ignore[arg-type]


@given(st.dictionaries(st.text(max_size=10), st.one_of(st.none(), st.integers(), st.text())))
def test_arbitrary_dicts_raise_only_event_error(data: dict[str, object]) -> None:
    try:
        event = event_from_dict(data)
    except EventError:
        return  # the one typed error is the expected outcome for nearly every random dict
    assert event.to_dict() == data


def test_event_error_is_a_fleet_error_and_a_value_error() -> None:
    assert issubclass(EventError, FleetError)
    assert issubclass(EventError, ValueError)


def test_events_are_frozen() -> None:
    event = ConnectionChanged(serial=SERIAL_A, at=1.0, state="online", reason="connected")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.state = "offline"  # type: ignore[misc]


async def test_subscriber_receives_events_in_order() -> None:
    bus = EventBus()
    with bus.subscribe() as sub:
        for n in range(3):
            bus.publish(layer(SERIAL_A, n))
        got = [await anext(sub) for _ in range(3)]
    assert [e.layer for e in got if isinstance(e, LayerChanged)] == [0, 1, 2]
    assert sub.closed


async def test_a_full_subscriber_loses_the_oldest_events_and_counts_them() -> None:
    bus = EventBus()
    slow = bus.subscribe(maxsize=4)
    fast = bus.subscribe(maxsize=100)
    for n in range(10):
        bus.publish(layer(SERIAL_A, n))
    assert slow.dropped == 6
    assert fast.dropped == 0
    slow.close()
    fast.close()
    assert [e.layer async for e in slow if isinstance(e, LayerChanged)] == [6, 7, 8, 9]
    assert [e.layer async for e in fast if isinstance(e, LayerChanged)] == list(range(10))


async def test_publish_wakes_a_waiting_reader() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    reader = asyncio.create_task(anext(sub))
    await asyncio.sleep(0)  # let the reader reach its wait before anything is published
    assert not reader.done()
    bus.publish(PrinterAdded(serial=SERIAL_A, at=1.0))
    assert await asyncio.wait_for(reader, 1) == PrinterAdded(serial=SERIAL_A, at=1.0)
    sub.close()


async def test_close_ends_a_waiting_reader() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    reader = asyncio.create_task(anext(sub, None))
    await asyncio.sleep(0)  # the reader must be waiting when the subscription closes
    sub.close()
    assert await asyncio.wait_for(reader, 1) is None
    assert bus.subscriber_count == 0


async def test_one_reader_per_subscription() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    first = asyncio.create_task(anext(sub))
    await asyncio.sleep(0)  # the first reader must be waiting before the second arrives
    with pytest.raises(RuntimeError, match="one reader"):
        await anext(sub)
    sub.close()
    with pytest.raises(StopAsyncIteration):
        await first


def test_serial_filter() -> None:
    bus = EventBus()
    only_a = bus.subscribe(serials=frozenset({SERIAL_A}))
    both = bus.subscribe(serials=frozenset({SERIAL_A, SERIAL_B}))
    everything = bus.subscribe()
    bus.publish(layer(SERIAL_A, 1))
    bus.publish(layer(SERIAL_B, 2))
    bus.publish(layer("01P00A000000003", 3))
    assert only_a.pending == 1
    assert both.pending == 2
    assert everything.pending == 3
    assert only_a.get_nowait() == layer(SERIAL_A, 1)
    assert only_a.get_nowait() is None


def test_kind_filter() -> None:
    bus = EventBus()
    hms_only = bus.subscribe(kinds=frozenset({HmsRaised}))
    bus.publish(layer(SERIAL_A, 1))
    bus.publish(HmsRaised(serial=SERIAL_A, at=1.0, code="0300_0100_0001_0007", severity="fatal"))
    assert hms_only.pending == 1
    assert isinstance(hms_only.get_nowait(), HmsRaised)


def test_closing_detaches_from_the_bus() -> None:
    bus = EventBus()
    subs = [
        bus.subscribe(),
        bus.subscribe(serials=frozenset({SERIAL_A, SERIAL_B})),
        bus.subscribe(serials=frozenset({SERIAL_A})),
    ]
    assert bus.subscriber_count == 4  # the two-serial subscription sits under both serials
    for sub in subs:
        sub.close()
        sub.close()  # closing twice is harmless
    assert bus.subscriber_count == 0
    bus.publish(layer(SERIAL_A, 1))
    assert all(sub.pending == 0 for sub in subs)


async def test_bus_close_ends_every_subscription_and_later_ones() -> None:
    bus = EventBus()
    subs = [bus.subscribe(), bus.subscribe(serials=frozenset({SERIAL_A, SERIAL_B}))]
    bus.publish(layer(SERIAL_A, 1))
    bus.close()
    assert all(sub.closed for sub in subs)
    assert [e async for e in subs[0]] == [layer(SERIAL_A, 1)]  # queued events are still read
    late = bus.subscribe()
    assert late.closed
    assert [e async for e in late] == []
    bus.publish(layer(SERIAL_A, 2))
    assert late.pending == 0


def test_queue_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        EventBus().subscribe(maxsize=0)


def test_publish_many_keeps_order() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    acked = CommandAcked(
        serial=SERIAL_A,
        at=1.0,
        section="print",
        command="pause",
        sequence_id="7",
        result="success",
        reason="",
    )
    bus.publish_many([layer(SERIAL_A, 1), acked])
    assert [sub.get_nowait(), sub.get_nowait()] == [layer(SERIAL_A, 1), acked]
