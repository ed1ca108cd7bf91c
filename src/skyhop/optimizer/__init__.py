"""Placement of a DAG's tasks by cost or time: candidates from the catalog, an exact ILP."""

from skyhop.catalog.blocklist import Blocklist, BlockRule
from skyhop.optimizer.optimizer import optimize
from skyhop.optimizer.plan import Placement, Plan, Transfer

__all__ = ["BlockRule", "Blocklist", "Placement", "Plan", "Transfer", "optimize"]
