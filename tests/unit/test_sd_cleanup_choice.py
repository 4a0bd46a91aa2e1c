"""Which of the queue's files a sweep deletes: never a protected one, the most recent kept."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from bambufarm.jobs.attempt import is_remote_name, remote_name
from bambufarm.jobs.sd_cleanup import deletable
from bambufarm.protocol.ftps import RemoteFile

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def files(*names: str, minutes: tuple[int, ...] = ()) -> dict[str, RemoteFile]:
    """Listing entries; the i-th uploaded `minutes[i]` minutes after T0 (else unknown time)."""
    out: dict[str, RemoteFile] = {}
    for i, name in enumerate(names):
        when = T0 + timedelta(minutes=minutes[i]) if i < len(minutes) else None
        out[name] = RemoteFile(name=name, size=1, modified=when)
    return out


def test_the_most_recently_printed_are_kept_then_the_newest_uploads() -> None:
    a, b, c, d, e = (remote_name(ch * 64) for ch in "abcde")
    card = files(a, b, c, d, e, minutes=(1, 2, 3, 4, 5))
    # Printed here newest first: c, then a; b, d and e never printed here (staged guesses).
    chosen = deletable(card, protected=(), recent=[c, a, c], keep=2)
    assert chosen == [b, d, e]  # printed here rank first, then newest upload; deleted oldest first
    assert deletable(card, protected=(), recent=[c, a], keep=3) == [b, d]
    assert deletable(card, protected={e, d}, recent=[], keep=0) == [a, b, c]


def test_the_names_the_queue_writes_and_no_other() -> None:
    assert is_remote_name(remote_name("0123456789abcdef" * 4))
    for name in ("bf-notes.gcode.3mf", f"bf-{'A' * 24}.gcode.3mf", f"bf-{'a' * 23}.gcode.3mf",
                 f"bf-{'a' * 25}.gcode.3mf", f"x-{'a' * 24}.gcode.3mf", f"bf-{'a' * 24}.3mf",
                 f"cache/bf-{'a' * 24}.gcode.3mf", f"bf-{'a' * 24}.gcode.3mf.part"):  # fmt: skip
        assert not is_remote_name(name), name


@given(
    st.sets(st.text("0123456789abcdef", min_size=64, max_size=64), max_size=12),
    st.data(),
    st.integers(min_value=0, max_value=5),
)
def test_protected_files_are_never_chosen(shas: set[str], data: st.DataObject, keep: int) -> None:
    names = sorted(remote_name(s) for s in shas)
    protected = data.draw(st.sets(st.sampled_from(names))) if names else set()
    recent = data.draw(st.lists(st.sampled_from(names))) if names else []
    chosen = deletable(files(*names), protected, recent, keep)
    assert not set(chosen) & protected
    assert len(chosen) == max(0, len(names) - len(protected) - keep)
    assert len(set(chosen)) == len(chosen)
