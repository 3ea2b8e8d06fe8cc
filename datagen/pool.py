"""The actor pool: hands work units to Ray actors, replaces dead ones, and resizes live.

It runs generator actors and transfer actors alike: an actor offers ``run_unit(unit) -> UnitReport``
and ``close() -> shards committed``, and a unit has a ``unit_id`` that the stream's manifest marks done.

Exactly-once comes from the manifest, not from the pool: a unit an actor was working on when it
died (or had made but not yet committed) goes back to the queue, and whoever takes it next resumes
after the samples the manifest holds. Each actor slot keeps its writer id across replacements, so
the new writer clears its predecessor's uncommitted files.

An actor gets work only once it has answered a readiness ping: one Ray has not placed yet (its
node is busy, or no node has its custom resource yet) holds no unit, so the placed actors finish
the plan on their own and the unplaced ones are killed at the end.
"""

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import ray
from ray.exceptions import RayActorError

from datagen.errors import DatagenError
from datagen.generators.checks import first_line
from datagen.unit_writer import UnitReport
from shards.locations import StreamLocation, stream_location
from shards.stores import open_unit_tracker


class PoolUnit(Protocol):
    """What the pool hands out: a generation ``WorkUnit`` or a ``TransferUnit`` (frozen, picklable).

    ``unit_id`` is the name the stream's manifest marks done.
    """

    @property
    def unit_id(self) -> str: ...


@dataclass(frozen=True)
class PoolEvent:
    """Progress for the callbacks: ``kind`` is unit, shards, restart, resize or placement.

    ``actors`` is the target size on resize and the placed (live) actors on placement, which
    also carries ``pending``: actors still waiting for Ray to place and start them.
    """

    kind: str
    writer_id: str = ""
    images: int = 0
    shards: int = 0
    seconds: float = 0.0
    actors: int = 0
    pending: int = 0


@dataclass
class PoolReport:
    """Totals of one ``run``."""

    units: int = 0
    images: int = 0
    shards: int = 0
    restarts: int = 0


@dataclass
class _Slot:
    writer_id: str
    handle: "ray.actor.ActorHandle"
    ping: ray.ObjectRef  # resolves once Ray has placed the actor and its constructor has returned
    live: bool = False
    uncommitted: list[PoolUnit] = field(default_factory=list)  # returned units whose tail may be unwritten
    retiring: bool = False


class ActorPool:
    """Runs ``units`` on ``size`` actors of ``actor_class`` until ``stream_dir``'s manifest holds all of them.

    Args:
        actor_class: a plain class constructed as ``actor_class(*actor_args, writer_id)``.
        stream_dir: the stream the actors write (its manifest says which units are done).
        writer_prefix: writer ids are this plus the slot number (g0, g1, ... or t0, ...).
        resources: custom Ray resources each actor requests (e.g. {"datagen": 1}).
    """

    def __init__(
        self,
        actor_class: type,
        actor_args: tuple,
        stream_dir: StreamLocation,
        units: list[PoolUnit],
        size: int,
        on_event: Callable[[PoolEvent], None] = lambda event: None,
        use_gpu: bool = False,
        resources: dict[str, float] | None = None,
        writer_prefix: str = "g",
        poll_interval_s: float = 0.5,
    ):
        if size < 1:
            raise DatagenError(f"an actor pool needs >= 1 actor (got {size})")
        self.actor_args = actor_args
        self.units = units
        self.on_event = on_event
        self.poll_interval_s = poll_interval_s
        self.stream_dir = stream_location(stream_dir)
        self.writer_prefix = writer_prefix
        self._actor_class = ray.remote(actor_class).options(
            num_cpus=0 if use_gpu else 1,
            num_gpus=1 if use_gpu else 0,
            resources=dict(resources or {}),
            max_restarts=0,  # the pool replaces dead actors itself, so it knows which units to requeue
        )
        self._slots: dict[str, _Slot] = {}
        self._target = size
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._placement = (0, 0)
        self._progress = open_unit_tracker(self.stream_dir)  # followed, not re-read, on every requeue
        self.report = PoolReport()

    # -- control, callable from other threads ------------------------------------------------

    def resize(self, size: int) -> None:
        """Grow or shrink the pool; shrinking lets each retired actor finish its unit first."""
        if size < 1:
            raise DatagenError(f"a running actor pool needs >= 1 actor (got {size})")
        with self._lock:
            self._target = size

    def stop(self) -> None:
        """End ``run`` early: in-flight units finish, nothing is half-committed, a rerun resumes."""
        self._stop.set()

    # -- the loop ------------------------------------------------------------------------------

    def _pending_units(self) -> deque[PoolUnit]:
        self._progress.refresh()
        return deque(unit for unit in self.units if not self._progress.is_done(unit.unit_id))

    def _start_actor(self, writer_id: str) -> None:
        handle = self._actor_class.remote(*self.actor_args, writer_id)
        self._slots[writer_id] = _Slot(writer_id, handle, handle.__ray_ready__.remote())

    def _apply_target(self) -> None:
        with self._lock:
            # Live actors first, so shrinking retires the ones still waiting for a node.
            active = sorted((slot for slot in self._slots.values() if not slot.retiring),
                            key=lambda slot: (not slot.live, int(slot.writer_id[len(self.writer_prefix) :])))
            for slot in active[self._target :]:
                slot.retiring = True
            names = (f"{self.writer_prefix}{index}" for index in range(10**6))
            free_ids = (name for name in names if name not in self._slots)
            for _ in range(self._target - len(active)):
                self._start_actor(next(free_ids))
            changed = len(active) != self._target
        if changed:
            self.on_event(PoolEvent("resize", actors=self._target))

    def _retire_idle(self, busy: set[str], pending: deque[PoolUnit]) -> None:
        for slot in [slot for slot in self._slots.values() if slot.retiring and slot.writer_id not in busy]:
            if slot.live:
                self._close_slot(slot, pending)
            with self._lock:
                del self._slots[slot.writer_id]
            ray.kill(slot.handle)

    def _close_slot(self, slot: _Slot, pending: deque[PoolUnit]) -> None:
        try:
            shards = ray.get(slot.handle.close.remote())
            slot.uncommitted.clear()
            self.report.shards += shards
            self.on_event(PoolEvent("shards", slot.writer_id, shards=shards))
        except RayActorError:
            self._requeue(slot, pending)

    def _requeue(self, slot: _Slot, pending: deque[PoolUnit], current: PoolUnit | None = None) -> None:
        self._progress.refresh()
        lost = slot.uncommitted + ([current] if current else [])
        for unit in lost:
            if not self._progress.is_done(unit.unit_id):
                pending.appendleft(unit)
        slot.uncommitted.clear()

    def _replace(self, slot: _Slot, pending: deque[PoolUnit], current: PoolUnit | None) -> None:
        self._requeue(slot, pending, current)
        self.report.restarts += 1
        self.on_event(PoolEvent("restart", slot.writer_id))
        with self._lock:
            del self._slots[slot.writer_id]
            if not slot.retiring:
                self._start_actor(slot.writer_id)

    def _placed(self, slot: _Slot, pending: deque[PoolUnit]) -> None:
        """The slot's ping answered: the actor takes work from now on, or it died before it could."""
        try:
            ray.get(slot.ping)
            slot.live = True
        except RayActorError as error:
            if error.actor_init_failed:
                # The message ends with the constructor's exception (Ray keeps no reference to it).
                raise DatagenError(f"actor {slot.writer_id} failed to start: {str(error).strip().splitlines()[-1]}") from None
            self._replace(slot, pending, None)

    def _report_placement(self) -> None:
        with self._lock:
            active = [slot for slot in self._slots.values() if not slot.retiring]
        placement = (sum(slot.live for slot in active), sum(not slot.live for slot in active))
        if placement != self._placement:
            self._placement = placement
            self.on_event(PoolEvent("placement", actors=placement[0], pending=placement[1]))

    def _finished(self, slot: _Slot, unit: PoolUnit, result: UnitReport) -> None:
        slot.uncommitted.append(unit)
        self.report.units += 1
        self.report.images += result.images
        self.report.shards += result.shards_committed
        self.on_event(PoolEvent("unit", result.writer_id, result.images, result.shards_committed, result.seconds))

    def run(self) -> PoolReport:
        """Generate until every unit is in the manifest (or ``stop``); return the totals.

        Raises:
            DatagenError: when an actor cannot start (bad weights, directions) or a unit fails.
        """
        pending = self._pending_units()
        in_flight: dict[ray.ObjectRef, tuple[str, PoolUnit]] = {}
        while True:
            busy = {writer_id for writer_id, _ in in_flight.values()}
            self._apply_target()
            self._retire_idle(busy, pending)
            if not self._stop.is_set():
                for slot in list(self._slots.values()):
                    if pending and slot.live and not slot.retiring and slot.writer_id not in busy:
                        unit = pending.popleft()
                        in_flight[slot.handle.run_unit.remote(unit)] = (slot.writer_id, unit)
                        busy.add(slot.writer_id)
            self._report_placement()
            if not in_flight and (not pending or self._stop.is_set()):
                if self._close_all(pending) or self._stop.is_set():
                    break
                continue
            # Otherwise units are running, or waiting for an actor to be placed.
            pings = {slot.ping: slot for slot in self._slots.values() if not slot.live}
            ready, _ = ray.wait([*in_flight, *pings], num_returns=1, timeout=self.poll_interval_s)
            for reference in ready:
                if reference in pings:
                    self._placed(pings[reference], pending)
                    continue
                writer_id, unit = in_flight.pop(reference)
                slot = self._slots[writer_id]
                try:
                    self._finished(slot, unit, ray.get(reference))
                except RayActorError:
                    self._replace(slot, pending, unit)
                except ray.exceptions.RayTaskError as error:
                    raise DatagenError(f"actor {writer_id}, unit {unit.unit_id}: {_reason(error)}") from None
        return self.report

    def _close_all(self, pending: deque[PoolUnit]) -> bool:
        """Commit every placed actor's open shard; True when nothing had to be requeued."""
        for slot in [slot for slot in self._slots.values() if slot.live]:
            self._close_slot(slot, pending)
        return not pending

    def shutdown(self) -> None:
        """Kill every actor (after ``run``; their writers are closed by then)."""
        with self._lock:
            for slot in self._slots.values():
                ray.kill(slot.handle)
            self._slots.clear()


def _reason(error: BaseException) -> str:
    """The original exception's message behind a Ray error (whose own text carries a traceback)."""
    return first_line(getattr(error, "cause", None) or error)
