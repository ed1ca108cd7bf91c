"""Failover provisioning: plan, try, classify, record, block, re-plan, retry.

Each attempt asks one provider for all `num_nodes` nodes in one place (gang: all or none;
anything partial is terminated). A failure is classified by the provider into an error
whose scope (zone, region, provider) is blocked before re-planning, so the next attempt
goes to the next best place, across zones, regions and providers. The tracker records every
attempt; its estimates make the plan skip places that just failed. With
`retry_until_up`, once every place has failed, the loop waits (exponential backoff) and
starts over.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from skyhop.catalog.blocklist import Blocklist, BlockRule
from skyhop.clock import Clock, RealClock
from skyhop.errors import InfeasibleError, UserError
from skyhop.provision.base import ClusterSpec, Instance, Provider
from skyhop.provision.errors import PROVIDER, REGION, ProvisionError
from skyhop.spec.dag import Dag
from skyhop.spec.task import Task
from skyhop.tracker.tracker import OK, Attempt, Key, Tracker

# Skip places whose estimated availability is below this while others remain: one recent
# capacity failure at a place never seen before brings it to ~0.22, while a place that
# usually works stays above it after one (tracker/tracker.py). Tuned with bench/failover.py.
MIN_AVAILABILITY = 0.3
BACKOFF_START_S, BACKOFF_MAX_S = 30.0, 600.0
TRANSIENT_RETRIES = 2


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
    def __init__(self, cluster: str, history: list[AttemptResult], reason: str):
        lines = "\n".join(f"  {i + 1}. {a.describe()}" for i, a in enumerate(history))
        super().__init__(f"could not provision {cluster!r}: {reason}\n"
                         f"attempts:\n{lines}" if history else
                         f"could not provision {cluster!r}: {reason}",
                         hint="retry with --retry-until-up, relax the resources, or allow "
                              "more infra")
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
                  tags: dict[str, str] | None = None, blocklist: Blocklist | None = None
                  ) -> tuple[Any, list[Instance], list[AttemptResult]]:
        """(placement, instances, attempt history) or ProvisionFailed. `blocklist`: places
        ruled out from the start (a managed job's preempted region)."""
        given = blocklist or Blocklist()
        blocklist = given
        history: list[AttemptResult] = []
        started = self.clock.now()
        backoff = BACKOFF_START_S
        placement = first
        transient = 0
        while True:
            if placement is None:
                try:
                    placement = self.plan(task, blocklist)
                except InfeasibleError as exc:
                    if not history:
                        raise
                    waited = self.clock.now() - started
                    if not retry_until_up or (max_wait_s is not None and waited >= max_wait_s):
                        raise ProvisionFailed(name, history, "every place that fits was "
                                              "tried") from None
                    pause = backoff if max_wait_s is None else min(backoff,
                                                                   max_wait_s - waited)
                    self.report(f"every place failed; retrying in {pause:.0f} s "
                                f"({exc.message.splitlines()[0]})")
                    self.clock.sleep(pause)
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
                    blocklist = given  # capacity comes back: try everything again
                    continue
            if on_placement is not None:
                on_placement(placement)  # intent in state before the provider spends
            provider = self.providers(placement.provider)
            try:
                instances = provider.provision(
                    ClusterSpec(name, task.num_nodes, {"skyhop-cluster": name, **(tags or {})}),
                    placement, task.num_nodes)
                if len(instances) < task.num_nodes:
                    raise _partial(placement, len(instances), task.num_nodes)
            except ProvisionError as error:
                history.append(self._observe(placement, error.kind, error.message))
                self._cleanup(provider, name)
                self.report(history[-1].describe())
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
        """Gang semantics: nothing of a failed attempt survives. A cleanup that fails
        (the provider's API is down too) is reported; `skyhop gc` finds what it left."""
        try:
            leftovers = provider.instances(name)
            if leftovers:
                provider.terminate(name, [i.instance_id for i in leftovers])
        except ProvisionError as exc:
            self.report(f"could not clean up a failed attempt on {provider.name}: "
                        f"{exc.message} (`skyhop gc` will)")


def _partial(placement: Any, got: int, wanted: int) -> ProvisionError:
    from skyhop.provision.errors import CapacityError

    return CapacityError(f"only {got} of {wanted} nodes could be created",
                         provider=placement.provider, region=placement.region,
                         zone=placement.zone, instance_type=placement.instance_type)
