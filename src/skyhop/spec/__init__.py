"""The task language: `Task`, `Resources`, `Dag`. Pure data; imports nothing else of skyhop
but the leaf `skyhop.errors`."""

from skyhop.spec.dag import Dag, load_dag, parse_dag
from skyhop.spec.resources import Resources
from skyhop.spec.task import DataRef, Task

__all__ = ["Dag", "DataRef", "Resources", "Task", "load_dag", "parse_dag"]
