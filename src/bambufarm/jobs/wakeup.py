"""`Wakeup`: how the queue, the plate gate and the fleet's events tell the dispatcher to look.

The dispatcher is not a polling loop: it sleeps until something that could change a decision
happens (a job added or cancelled, a plate cleared, a printer online or ready) and then runs
one matching round for everything that happened meanwhile. Many pokes between two rounds
make one round; a poke during a round makes exactly one more.

Cancellations travel separately from pokes because each needs its own action (stop the
printer holding the job, or abort its upload), not just another round.
"""

import asyncio
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Pokes:
    """What happened since the dispatcher last looked."""

    reasons: frozenset[str]  # e.g. {"job added", "plate cleared on 01P00A000000001"}
    cancelled: frozenset[int]  # job ids cancelled by the operator
    timed_out: bool = False  # nothing happened: the slow safety re-check is due


class Wakeup:
    """Pokes for the dispatcher, coalesced until it takes them."""

    __slots__ = ("_cancelled", "_event", "_reasons")

    def __init__(self) -> None:
        self._reasons: set[str] = set()
        self._cancelled: set[int] = set()
        self._event = asyncio.Event()

    @property
    def pending(self) -> bool:
        """True when a poke is waiting to be taken."""
        return self._event.is_set()

    def poke(self, reason: str) -> None:
        """Ask for a matching round; `reason` is logged with it."""
        self._reasons.add(reason)
        self._event.set()

    def job_cancelled(self, job_id: int) -> None:
        """A job was cancelled: the dispatcher frees whatever printer holds it."""
        self._cancelled.add(job_id)
        self._reasons.add("job cancelled")
        self._event.set()

    def take(self) -> Pokes:
        """Everything poked so far, without waiting; clears it."""
        pokes = Pokes(frozenset(self._reasons), frozenset(self._cancelled))
        self._reasons.clear()
        self._cancelled.clear()
        self._event.clear()
        return pokes

    async def wait(self, timeout: float | None) -> Pokes:  # noqa: ASYNC109 - the safety re-check period
        """The next pokes, waiting up to `timeout` seconds (then `timed_out` and nothing else)."""
        if not self._event.is_set():
            try:
                async with asyncio.timeout(timeout):
                    await self._event.wait()
            except TimeoutError:
                return Pokes(frozenset(), frozenset(), timed_out=True)
        return self.take()
