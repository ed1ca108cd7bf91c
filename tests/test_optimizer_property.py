"""The ILP (with its pruning) finds the optimum that brute force finds, on random DAGs."""

import itertools

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from skyhop.catalog.catalog import Catalog
from skyhop.catalog.egress import egress_price_per_gb
from skyhop.catalog.offer import Offer
from skyhop.errors import InfeasibleError
from skyhop.optimizer import optimize
from skyhop.optimizer.problem import task_candidates
from skyhop.spec import Dag, Resources, Task
from skyhop.spec.task import DataRef

LOCATIONS = [("aws", "us-east-1"), ("aws", "eu-west-1"), ("gcp", "us-central1"),
             ("gcp", "europe-west4"), ("lambda", "us-east-1"), ("azure", "eastus")]
GPUS = ["V100", "A100"]


@st.composite
def problems(draw):
    offers = []
    for provider, region in LOCATIONS:
        for gpu in GPUS:
            if draw(st.booleans()):
                price = draw(st.floats(0.5, 10, allow_nan=False))
                spot = draw(st.one_of(st.none(), st.floats(0.1, 5, allow_nan=False)))
                offers.append(Offer(provider, region, None, f"{gpu}-box", gpu, 1, 8, 64, 16,
                                    round(price, 3), None if spot is None else round(spot, 3),
                                    False, "x86_64"))
    n = draw(st.integers(1, 4))
    edges = sorted({(u, v) for v in range(1, n) for u in range(v)
                    if draw(st.booleans())})
    tasks = []
    for i in range(n):
        gpus = draw(st.lists(st.sampled_from(GPUS), min_size=1, max_size=2, unique=True))
        hours = {g: draw(st.sampled_from([1.0, 2.0, 3.0, 5.0])) for g in gpus}
        inputs = ()
        if draw(st.booleans()):
            provider, region = draw(st.sampled_from(LOCATIONS))
            scheme = {"aws": "s3", "gcp": "gs", "lambda": "s3", "azure": "az"}[provider]
            inputs = (DataRef(uri=f"{scheme}://b{i}", gigabytes=draw(st.sampled_from(
                [0, 10, 100, 500])), region=region if provider != "lambda" else None),)
        tasks.append(Task(name=f"t{i}", run="x",
                          num_nodes=draw(st.integers(1, 2)),
                          resources=Resources(accelerators={g: 1 for g in gpus},
                                              use_spot=draw(st.booleans())),
                          estimated_hours=hours, inputs=inputs,
                          outputs=draw(st.sampled_from([0, 5, 50, 400]))))
    objective = draw(st.sampled_from(["cost", "time"]))
    limit = draw(st.one_of(st.none(), st.floats(1, 30)))
    return offers, Dag(tasks, edges), objective, limit


def brute_force(catalog, dag, objective, limit):
    """(best time, best cost) by enumerating every combination of offers."""
    options = [task_candidates(t, i, catalog) for i, t in enumerate(dag.tasks)]
    best = None
    for combo in itertools.product(*(range(len(c)) for c in options)):
        cost, finish = 0.0, [0.0] * len(dag.tasks)
        where = []
        for t, k in enumerate(combo):
            c = options[t]
            cost += float(c.cost[k])
            region = int(c.region[k])
            where.append((catalog.providers[catalog.region_provider[region]],
                          catalog.region_names[region]))
        for u, v in dag.edges:
            gb = dag.tasks[u].output_gigabytes
            cost += gb * egress_price_per_gb(*where[u], *where[v])
        for t in dag.order:
            start = max((finish[u] for u, v in dag.edges if v == t), default=0.0)
            finish[t] = start + float(options[t].hours[combo[t]])
        makespan = max(finish)
        if objective == "cost":
            if limit is not None and makespan > limit + 1e-9:
                continue
            key = (cost, 0.0)
        else:
            if limit is not None and cost > limit + 1e-6:
                continue
            key = (makespan, cost)
        if best is None or key < best:
            best = key
    return best


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_ilp_matches_brute_force(problem):
    offers, dag, objective, limit = problem
    assume({o.accelerator for o in offers} == set(GPUS))  # both names known to the catalog
    catalog = Catalog.from_offers(offers)
    try:
        expected = brute_force(catalog, dag, objective, limit)
    except InfeasibleError:
        expected = "infeasible"
    kwargs = {"deadline": limit} if objective == "cost" else {"budget": limit}
    try:
        plan = optimize(dag, catalog, minimize=objective, **kwargs)
    except InfeasibleError:
        assert expected in ("infeasible", None)
        return
    assert expected not in ("infeasible", None), "the optimizer found a plan brute force did not"
    if objective == "cost":
        assert plan.total_cost == pytest.approx(expected[0], rel=1e-6, abs=1e-6)
    else:
        assert plan.total_hours == pytest.approx(expected[0], rel=1e-9, abs=1e-9)
        assert plan.total_cost == pytest.approx(expected[1], rel=1e-6, abs=1e-6)
