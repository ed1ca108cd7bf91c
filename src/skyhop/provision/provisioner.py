"""Failover provisioning: plan, try, classify, record, block, re-plan, retry.

Each attempt asks one provider for all `num_nodes` nodes in one place (gang: all or none;
anything partial is terminated). A failure is classified by the provider into an error
whose scope (zone, region, provider) is blocked before re-planning, so the next attempt
goes to the next best place, across zones, regions and providers. The tracker records every
attempt; its estimates make the plan skip places that just failed. With
`retry_until_up`, once every place has failed, the loop waits (exponential backoff) and
starts over.

Two bounds keep a bad day cheap: throttling (an account-wide rate limit) blocks no place
and is backed off on the same place a few times, then reported; and with no capacity the
loop escalates to dearer types only up to ESCALATION_FACTOR x the first plan's price per
node-hour (a task's `max_hourly_cost` replaces that bound); the same type in other zones and
regions is always tried, whatever its price there.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from skyhop.catalog.blocklist import Blocklist, BlockRule
from skyhop.clock import Clock, RealClock
from skyhop.errors import InfeasibleError, UserError
from skyhop.provision.base import ClusterSpec, Instance, Provider
from skyhop.provision.errors import (
    PROVIDER,
    REGION,
    ProvisionError,
    ThrottledError,
    TransientError,
)
from skyhop.spec.dag import Dag
from skyhop.spec.task import Task
from skyhop.tracker.tracker import OK, Attempt, Key, Tracker

# Skip places whose estimated availability is below this while others remain: one recent
# capacity failure at a place never seen before brings it to ~0.22, while a place that
# usually works stays above it after one (tracker/tracker.py). Tuned with bench/failover.py.
MIN_AVAILABILITY = 0.3
BACKOFF_START_S, BACKOFF_MAX_S = 30.0, 600.0
TRANSIENT_RETRIES = 2
# Throttling: this many more tries of the same place, waiting THROTTLE_START_S x 2^n (with
# jitter, at most THROTTLE_MAX_S) in between; then a clear error.
THROTTLE_RETRIES, THROTTLE_START_S, THROTTLE_MAX_S = 3, 10.0, 120.0
# With no capacity, dearer types are tried up to this multiple of the first plan's price.
ESCALATION_FACTOR = 2.0
# A failed attempt's leftovers are terminated until the provider confirms, for this long.
CLEANUP_TIMEOUT_S, CLEANUP_BACKOFF_MAX_S = 600.0, 30.0


@dataclass
class AttemptResult:
    placement: Any
    outcome: str
    message: str
    at: float

    def describe(self) -> str:
        p = self.placement
        where = "/".join(x for x in (p.provider, p.region, p.zone) if x)
        return f"{where} {p.instance_type}{' (spot)' if p.use_spot else ''}: " + (
            "ok" if self.outcome == OK else f"{self.outcome}: {self.message}")


class ProvisionFailed(UserError):
    def __init__(self, cluster: str, history: list[AttemptResult], reason: str,
                 hint: str | None = None):
        lines = "\n".join(f"  {i + 1}. {a.describe()}" for i, a in enumerate(history))
        super().__init__(f"could not provision {cluster!r}: {reason}\n"
                         f"attempts:\n{lines}" if history else
                         f"could not provision {cluster!r}: {reason}",
                         hint=hint or "retry with --retry-until-up, relax the resources, or "
                                      "allow more infra")
        self.history = history


def _key(placement: Any) -> Key:
    return Key(placement.provider, placement.region, placement.zone,
               placement.instance_type, bool(placement.use_spot))


def block_rule(error: ProvisionError, placement: Any) -> BlockRule:
    """What a failure rules out: the instance type in this zone, or the region, or the
    provider (the error's scope)."""
    spot = bool(placement.use_spot)
    if error.scope == PROVIDER:
        return BlockRule(placement.provider, spot=None)
    if error.scope == REGION:
        return BlockRule(placement.provider, placement.region or "*", spot=spot)
    return BlockRule(placement.provider, placement.region or "*", placement.zone or "*",
                     placement.instance_type, spot=spot)


@dataclass
class Provisioner:
    catalog: Any
    allowed_infra: list[Any]
    providers: Callable[[str], Provider]
    clock: Clock = field(default_factory=RealClock)
    tracker: Tracker = field(default_factory=Tracker)
    record: Callable[[Attempt], None] | None = None  # persist attempts (TrackerStore)
    report: Callable[[str], None] = lambda message: None
    use_tracker: bool = True
    min_availability: float = MIN_AVAILABILITY

    def plan(self, task: Task, blocklist: Blocklist) -> Any:
        from skyhop.optimizer import optimize

        availability: Mapping[Key, float] | None = (
            self.tracker.snapshot(self.clock.now()) if self.use_tracker else None)
        plan = optimize(Dag([task]), self.catalog, allowed_infra=self.allowed_infra,
                        blocklist=blocklist, availability=availability,
                        min_availability=self.min_availability if self.use_tracker else 0.0)
        return plan.tasks[0]

    def _observe(self, placement: Any, outcome: str, message: str = "") -> AttemptResult:
        now = self.clock.now()
        attempt = Attempt(now, _key(placement), outcome, message)
        self.tracker.record(attempt)
        if self.record is not None:
            self.record(attempt)
        return AttemptResult(placement, outcome, message, now)

    def provision(self, name: str, task: Task, *, first: Any = None,
                  on_placement: Callable[[Any], None] | None = None,
                  retry_until_up: bool = False, max_wait_s: float | None = None,
                  tags: dict[str, str] | None = None, blocklist: Blocklist | None = None,
                  created: Callable[[str, str | None, list[str]], None] | None = None
                  ) -> tuple[Any, list[Instance], list[AttemptResult]]:
        """(placement, instances, attempt history) or ProvisionFailed. `blocklist`: places
        ruled out from the start (a managed job's preempted region). `created(provider,
        region, ids)`: told of every resource a provider makes, as soon as it exists."""
        given = blocklist or Blocklist()
        blocklist = given
        history: list[AttemptResult] = []
        started = self.clock.now()
        backoff = BACKOFF_START_S
        placement = first
        transient = throttled = 0
        price_cap: float | None = None  # per node-hour; None: the task's own max_hourly_cost
        types_tried: set[str] = set()  # the same type in another zone is not escalation
        while True:
            if placement is None:
                try:
                    planned = self.plan(task, blocklist)
                    if (price_cap is not None and planned.instance_type not in types_tried
                            and planned.hourly_price > price_cap + 1e-9):
                        raise InfeasibleError(
                            f"the next choice, {planned.instance_type} at "
                            f"${planned.hourly_price:.2f}/h, costs more than "
                            f"{ESCALATION_FACTOR:g}x the first choice's price")
                    placement = planned
                except InfeasibleError as exc:
                    if not history:
                        raise
                    waited = self.clock.now() - started
                    if not retry_until_up or (max_wait_s is not None and waited >= max_wait_s):
                        reason = ("every place that fits was tried" if price_cap is None else
                                  f"every place that fits within ${price_cap:.2f}/h per node "
                                  f"({ESCALATION_FACTOR:g}x the first choice) was tried; set "
                                  "`max_hourly_cost` to allow dearer types")
                        raise ProvisionFailed(name, history, reason) from None
                    pause = backoff if max_wait_s is None else min(backoff,
                                                                   max_wait_s - waited)
                    self.report(f"every place failed; retrying in {pause:.0f} s "
                                f"({exc.message.splitlines()[0]})")
                    self.clock.sleep(pause)
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
                    blocklist = given  # capacity comes back: try everything again
                    continue
            if price_cap is None and not _has_price_limit(task):
                price_cap = placement.hourly_price * ESCALATION_FACTOR
            types_tried.add(placement.instance_type)
            if on_placement is not None:
                on_placement(placement)  # intent in state before the provider spends
            provider = self.providers(placement.provider)
            try:
                instances = provider.provision(
                    ClusterSpec(name, task.num_nodes, {"skyhop-cluster": name, **(tags or {})},
                                created=_bound(created, placement.provider)),
                    placement, task.num_nodes)
                if len(instances) < task.num_nodes:
                    raise _partial(placement, len(instances), task.num_nodes)
            except ProvisionError as error:
                history.append(self._observe(placement, error.kind, error.message))
                self._cleanup(provider, name)
                self.report(history[-1].describe())
                if isinstance(error, ThrottledError):  # blocks nothing: back off, then stop
                    if throttled >= THROTTLE_RETRIES:
                        raise ProvisionFailed(
                            name, history, f"{placement.provider}'s API kept throttling "
                            f"requests ({throttled + 1} tries with backoff)",
                            hint=error.hint) from None
                    pause = min(THROTTLE_START_S * 2 ** throttled, THROTTLE_MAX_S)
                    throttled += 1
                    self.clock.sleep(pause * random.uniform(0.5, 1.0))
                    continue
                if error.retry_same and transient < TRANSIENT_RETRIES:
                    transient += 1
                    self.clock.sleep(min(backoff, 5.0 * transient))
                    continue
                transient = 0
                blocklist = blocklist + Blocklist((block_rule(error, placement),))
                placement = None
                continue
            history.append(self._observe(placement, OK))
            return placement, instances, history

    def _cleanup(self, provider: Provider, name: str) -> None:
        """Gang semantics: nothing of a failed attempt survives. Terminated until the
        provider confirms none is left, backing off while its API fails or throttles (for
        CLEANUP_TIMEOUT_S); a cleanup that still fails is reported, and the ids recorded in
        state (`created`) let `down` and `status --refresh` finish it."""
        deadline = self.clock.now() + CLEANUP_TIMEOUT_S
        pause = 1.0
        while True:
            try:
                leftovers = provider.instances(name)
                if not leftovers:
                    return
                provider.terminate(name, [i.instance_id for i in leftovers])
                continue  # confirmed by the next look
            except ProvisionError as exc:
                if not isinstance(exc, TransientError) or self.clock.now() >= deadline:
                    self.report(f"could not clean up a failed attempt on {provider.name}: "
                                f"{exc.message} (`skyhop down` or `status --refresh` will)")
                    return
                self.report(f"cleaning up a failed attempt on {provider.name}: "
                            f"{exc.message}; retrying in {pause:.0f} s")
            self.clock.sleep(pause * random.uniform(0.5, 1.0))
            pause = min(pause * 2, CLEANUP_BACKOFF_MAX_S)


def _bound(created: Callable[[str, str | None, list[str]], None] | None, provider: str
           ) -> Callable[[str | None, list[str]], None] | None:
    if created is None:
        return None
    return lambda region, ids: created(provider, region, ids)


def _has_price_limit(task: Task) -> bool:
    return any(alt.max_hourly_cost is not None for alt in task.resources.alternatives())


def _partial(placement: Any, got: int, wanted: int) -> ProvisionError:
    from skyhop.provision.errors import CapacityError

    return CapacityError(f"only {got} of {wanted} nodes could be created",
                         provider=placement.provider, region=placement.region,
                         zone=placement.zone, instance_type=placement.instance_type)
