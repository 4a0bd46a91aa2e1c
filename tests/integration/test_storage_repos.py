"""Repository functions on SQLite and PostgreSQL: printers, users, credentials, audit, events."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from bambufarm.storage.audit import list_actions, record_action
from bambufarm.storage.credentials import (
    add_api_key,
    add_session,
    get_api_key,
    get_session,
    list_api_keys,
    revoke_api_key,
)
from bambufarm.storage.db import Database
from bambufarm.storage.errors import (
    DuplicatePrinter,
    DuplicateUser,
    InvalidValue,
    PrinterNotFound,
    SecretKeyError,
    UserNotFound,
)
from bambufarm.storage.events import NewEvent, append_events, event_history, prune_events
from bambufarm.storage.paging import Cursor
from bambufarm.storage.printers import (
    NewPrinter,
    PrinterChanges,
    add_printer,
    get_printer,
    list_printers,
    remove_printer,
    update_printer,
)
from bambufarm.storage.secrets import SecretBox
from bambufarm.storage.users import (
    UserChanges,
    add_user,
    count_users,
    get_user,
    get_user_by_id,
    list_users,
    remove_user,
    update_user,
)

pytest_plugins = ["tests.support.postgres"]

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CODE = "12345678"
HASH = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(Fernet.generate_key())


def p1s(n: int, **overrides: object) -> NewPrinter:
    values: dict[str, object] = {
        "serial": f"01P00A{n:09d}",
        "name": f"P1S {n:02d}",
        "model_code": "C12",
        "host": f"127.0.0.{n % 250 + 1}",
        "access_code": CODE,
    }
    values.update(overrides)
    return NewPrinter(**values)  # type: ignore[arg-type]


# --- printers ---------------------------------------------------------------------------------


async def test_printer_round_trip_keeps_the_code_encrypted(db: Database, box: SecretBox) -> None:
    async with db.session() as s:
        added = await add_printer(s, box, p1s(1, mqtt_port=18883), now=T0)
    async with db.session(readonly=True) as s:
        got = await get_printer(s, added.serial)
        raw = (
            await s.execute(
                text("SELECT access_code_encrypted FROM printers WHERE serial = :s"),
                {"s": added.serial},
            )
        ).scalar_one()
    assert got == added
    assert (got.name, got.model_code, got.mqtt_port, got.ftps_port) == (
        "P1S 01",
        "C12",
        18883,
        None,
    )
    assert got.created_at == T0
    assert got.created_at.tzinfo is not None
    assert CODE not in raw
    assert box.decrypt(raw) == CODE
    assert got.access_code(box) == CODE
    assert CODE not in repr(got)
    assert CODE not in repr(p1s(1))


async def test_same_code_encrypts_differently_each_time(db: Database, box: SecretBox) -> None:
    async with db.session() as s:
        first = await add_printer(s, box, p1s(1))
        second = await add_printer(s, box, p1s(2))
    assert first.access_code_encrypted != second.access_code_encrypted


async def test_wrong_key_cannot_read_the_code(db: Database, box: SecretBox) -> None:
    async with db.session() as s:
        added = await add_printer(s, box, p1s(1))
    with pytest.raises(SecretKeyError, match="cannot be decrypted with the current key"):
        added.access_code(SecretBox(Fernet.generate_key()))


async def test_duplicate_serial_is_a_typed_error_and_the_transaction_goes_on(
    db: Database, box: SecretBox
) -> None:
    async with db.session() as s:
        await add_printer(s, box, p1s(1))
        with pytest.raises(DuplicatePrinter, match="01P00A000000001 is already added"):
            await add_printer(s, box, p1s(1, name="again"))
        await add_printer(s, box, p1s(2))
    async with db.session(readonly=True) as s:
        assert (await list_printers(s)).total == 2


async def test_model_aliases_are_stored_by_their_code(db: Database, box: SecretBox) -> None:
    async with db.session() as s:
        added = await add_printer(s, box, p1s(1, model_code="3DPrinter-X1-Carbon"))
    assert added.model_code == "BL-P001"


async def test_missing_printer(db: Database, box: SecretBox) -> None:
    async with db.session() as s:
        with pytest.raises(PrinterNotFound, match="NOPE"):
            await get_printer(s, "NOPE")
        with pytest.raises(PrinterNotFound):
            await update_printer(s, box, "NOPE", PrinterChanges(name="x"))
        with pytest.raises(PrinterNotFound):
            await remove_printer(s, "NOPE")


async def test_list_filters_and_pages(db: Database, box: SecretBox) -> None:
    async with db.session() as s:
        for n in range(1, 8):
            await add_printer(s, box, p1s(n, enabled=n % 2 == 1))
        await add_printer(s, box, p1s(8, model_code="N2S", name="A1 100%"))
    async with db.session(readonly=True) as s:
        everything = await list_printers(s, limit=3)
        second = await list_printers(s, offset=3, limit=3)
        enabled = await list_printers(s, enabled=True)
        a1 = await list_printers(s, model_code="N2S")
        percent = await list_printers(s, search="100%")
        wildcard = await list_printers(s, search="%")
        by_host = await list_printers(s, search="127.0.0.4")
    assert everything.total == 8
    assert [p.name for p in everything.items] == ["A1 100%", "P1S 01", "P1S 02"]
    assert [p.name for p in second.items] == ["P1S 03", "P1S 04", "P1S 05"]
    assert enabled.total == 5  # 1, 3, 5, 7 and the A1
    assert all(p.enabled for p in enabled.items)
    assert [p.serial for p in a1.items] == ["01P00A000000008"]
    assert percent.total == 1
    assert wildcard.total == 1  # "%" is a character to find, not a wildcard
    assert [p.name for p in by_host.items] == ["P1S 03"]


async def test_update_changes_only_what_is_given(db: Database, box: SecretBox) -> None:
    async with db.session() as s:
        added = await add_printer(s, box, p1s(1, mqtt_port=18883, ftps_port=10990), now=T0)
    later = T0 + timedelta(minutes=5)
    async with db.session() as s:
        changed = await update_printer(
            s,
            box,
            added.serial,
            PrinterChanges(
                mqtt_port=None, enabled=False, access_code="87654321", tls_pin="ab" * 32
            ),
            now=later,
        )
    assert (changed.mqtt_port, changed.ftps_port, changed.enabled) == (None, 10990, False)
    assert changed.name == added.name
    assert changed.tls_pin == "ab" * 32
    assert changed.access_code(box) == "87654321"
    assert (changed.created_at, changed.updated_at) == (T0, later)
    assert "87654321" not in repr(PrinterChanges(access_code="87654321"))


async def test_remove_printer(db: Database, box: SecretBox) -> None:
    async with db.session() as s:
        await add_printer(s, box, p1s(1))
        await remove_printer(s, "01P00A000000001")
    async with db.session(readonly=True) as s:
        assert (await list_printers(s)).total == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"serial": "01P 00A"}, "letters and digits"),
        ({"serial": "x" * 33}, "letters and digits"),
        ({"model_code": "ZZZ"}, "unknown printer model code"),
        ({"host": ""}, "IP address or host name"),
        ({"mqtt_port": 0}, "mqtt_port must be between 1 and 65535"),
        ({"camera_port": 70000}, "camera_port must be between"),
        ({"access_code": "has space"}, "access code must be"),
        ({"access_code": ""}, "access code must be"),
        ({"name": "n" * 65}, "at most 64"),
    ],
)
async def test_bad_printer_values_are_refused_with_a_reason(
    db: Database, box: SecretBox, overrides: dict[str, object], message: str
) -> None:
    async with db.session() as s:
        with pytest.raises(InvalidValue, match=message) as caught:
            await add_printer(s, box, p1s(1, **overrides))
    assert "has space" not in str(caught.value)


async def test_timestamps_come_back_in_utc(db: Database, box: SecretBox) -> None:
    tokyo = datetime(2025, 3, 1, 21, 0, tzinfo=timezone(timedelta(hours=9)))
    async with db.session() as s:
        added = await add_printer(s, box, p1s(1), now=tokyo)
    async with db.session(readonly=True) as s:
        got = await get_printer(s, added.serial)
    assert got.created_at == tokyo
    assert got.created_at.utcoffset() == timedelta(0)


# --- users and credentials --------------------------------------------------------------------


async def test_users_are_case_insensitive_and_unique(db: Database) -> None:
    async with db.session() as s:
        alice = await add_user(s, " Alice ", HASH, "operator", now=T0)
        with pytest.raises(DuplicateUser, match="'alice' already exists"):
            await add_user(s, "ALICE", HASH, "viewer")
        assert await get_user(s, "aLiCe") == alice
        assert await get_user_by_id(s, alice.id) == alice
        assert await count_users(s) == 1
    assert alice.username == "alice"
    assert HASH not in repr(alice)


async def test_user_values_are_checked(db: Database) -> None:
    async with db.session() as s:
        with pytest.raises(InvalidValue, match="role 'root'"):
            await add_user(s, "bob", HASH, "root")
        with pytest.raises(InvalidValue, match="PHC hash"):
            await add_user(s, "bob", "plain-password", "viewer")
        with pytest.raises(InvalidValue, match="username"):
            await add_user(s, "bob smith", HASH, "viewer")
        with pytest.raises(UserNotFound):
            await get_user(s, "nobody")
        with pytest.raises(UserNotFound):
            await get_user_by_id(s, 4242)


async def test_update_and_list_users(db: Database) -> None:
    async with db.session() as s:
        for name in ("carol", "alice", "bob"):
            await add_user(s, name, HASH, "viewer")
        updated = await update_user(
            s, "bob", UserChanges(role="admin", disabled=True, must_change_password=True)
        )
        page = await list_users(s, limit=2)
    assert (updated.role, updated.disabled, updated.must_change_password) == ("admin", True, True)
    assert [u.username for u in page.items] == ["alice", "bob"]
    assert page.total == 3


async def test_removing_a_user_removes_their_keys_and_sessions(db: Database) -> None:
    async with db.session() as s:
        user = await add_user(s, "dave", HASH, "operator")
        await add_api_key(
            s,
            key_id="k1",
            owner_id=user.id,
            name="erp",
            secret_hash="h" * 64,
            scopes=frozenset({"read"}),
        )
        await add_session(
            s,
            token_hash="t" * 64,
            user_id=user.id,
            csrf_hash="c" * 64,
            expires_at=T0 + timedelta(hours=1),
        )
    async with db.session() as s:
        await remove_user(s, "dave")
    async with db.session(readonly=True) as s:
        assert await list_api_keys(s, include_revoked=True) == ()
        assert await get_session(s, "t" * 64) is None


async def test_api_key_rows_and_revocation(db: Database) -> None:
    async with db.session() as s:
        user = await add_user(s, "erin", HASH, "admin")
        key = await add_api_key(
            s,
            key_id="abc",
            owner_id=user.id,
            name="mes",
            secret_hash="h" * 64,
            scopes=frozenset({"read", "control"}),
            now=T0,
        )
        revoked = await revoke_api_key(s, "abc", now=T0 + timedelta(days=1))
        again = await revoke_api_key(s, "abc", now=T0 + timedelta(days=2))
        active = await list_api_keys(s, owner_id=user.id)
        every = await list_api_keys(s, owner_id=user.id, include_revoked=True)
        stored = await get_api_key(s, "abc")
    assert key.scopes == frozenset({"read", "control"})
    assert not key.revoked
    assert revoked.revoked
    assert again.revoked_at == T0 + timedelta(days=1)
    assert active == ()
    assert every == (stored,)
    assert "h" * 64 not in repr(stored)


# --- audit log and events ---------------------------------------------------------------------


async def test_audit_log_filters_and_cursor_pages(db: Database) -> None:
    async with db.session() as s:
        for i in range(7):
            await record_action(
                s,
                "alice" if i % 2 else "bob",
                "printer.pause",
                printer_serial=f"SER{i % 3}",
                details={"i": i},
                at=T0 + timedelta(seconds=i),
            )
    async with db.session(readonly=True) as s:
        first = await list_actions(s, limit=3)
        assert first.next_cursor is not None
        second = await list_actions(s, limit=3, after=Cursor.decode(first.next_cursor.encode()))
        assert second.next_cursor is not None
        third = await list_actions(s, limit=3, after=second.next_cursor)
        alice = await list_actions(s, actor="alice")
        ser0 = await list_actions(s, printer_serial="SER0")
        window = await list_actions(
            s, since=T0 + timedelta(seconds=2), until=T0 + timedelta(seconds=4)
        )
    order = [e.details["i"] for page in (first, second, third) for e in page.items]
    assert order == [6, 5, 4, 3, 2, 1, 0]
    assert third.next_cursor is None
    assert [e.details["i"] for e in alice.items] == [5, 3, 1]
    assert [e.details["i"] for e in ser0.items] == [6, 3, 0]
    assert [e.details["i"] for e in window.items] == [3, 2]
    with pytest.raises(TypeError):
        first.items[0].details["i"] = 99  # type: ignore[index]


async def test_event_history_pages_through_equal_timestamps(db: Database) -> None:
    # Many events share one timestamp (a fleet tick): the cursor must not skip or repeat any.
    async with db.session() as s:
        await append_events(
            s,
            [
                NewEvent(f"SER{i % 2}", "hms" if i % 5 == 0 else "state", {"i": i}, T0)
                for i in range(25)
            ],
        )
    seen: list[int] = []
    cursor = None
    async with db.session(readonly=True) as s:
        while True:
            page = await event_history(s, limit=4, after=cursor)
            seen.extend(e.body["i"] for e in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        hms = await event_history(s, kinds={"hms"})
        ser1 = await event_history(s, serial="SER1", limit=1000)
    assert sorted(seen) == list(range(25))
    assert len(seen) == 25
    assert sorted(e.body["i"] for e in hms.items) == [0, 5, 10, 15, 20]
    assert len(ser1.items) == 12
    assert all(e.serial == "SER1" for e in ser1.items)


async def test_prune_events_keeps_the_recent_ones(db: Database) -> None:
    async with db.session() as s:
        await append_events(
            s, [NewEvent("SER", "state", {"i": i}, T0 + timedelta(days=i)) for i in range(5)]
        )
        assert await prune_events(s, T0 + timedelta(days=3)) == 3
        left = await event_history(s)
    assert [e.body["i"] for e in left.items] == [4, 3]


async def test_history_queries_check_their_bounds(db: Database) -> None:
    async with db.session(readonly=True) as s:
        with pytest.raises(InvalidValue, match="limit must be between 1 and 1000"):
            await event_history(s, limit=0)
        with pytest.raises(InvalidValue, match="no time zone"):
            await event_history(s, since=datetime(2025, 1, 1))  # noqa: DTZ001
        with pytest.raises(InvalidValue, match="offset must be 0 or more"):
            await list_printers(s, offset=-1)
    with pytest.raises(InvalidValue, match="not one this server issued"):
        Cursor.decode("garbage!")
    with pytest.raises(InvalidValue, match="not one this server issued"):
        Cursor.decode(Cursor(T0, 1).encode()[:-3])
