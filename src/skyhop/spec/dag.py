"""`Dag`: tasks and the dependencies between them.

A YAML file with several documents is a chain, as in SkyPilot (a first document holding only
`name` names the pipeline). When any task names `depends_on`, the edges are exactly those
declared, which gives any DAG.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from skyhop.errors import SpecError
from skyhop.names import check_name
from skyhop.spec.task import Task
from skyhop.spec.yaml_source import load_documents


class Dag:
    """Tasks (by index) and edges (parent index, child index), acyclic."""

    def __init__(self, tasks: Sequence[Task], edges: Iterable[tuple[int, int]] = (),
                 name: str | None = None):
        self.tasks = list(tasks)
        self.edges = sorted(set(edges))
        self.name = name
        for u, v in self.edges:
            if not (0 <= u < len(self.tasks) and 0 <= v < len(self.tasks)) or u == v:
                raise SpecError(f"invalid dependency edge ({u}, {v})")
        self.order = self._topological_order()

    @classmethod
    def chain(cls, tasks: Sequence[Task], name: str | None = None) -> Dag:
        return cls(tasks, [(i, i + 1) for i in range(len(tasks) - 1)], name)

    @classmethod
    def from_tasks(cls, tasks: Sequence[Task], name: str | None = None) -> Dag:
        """Edges from `depends_on` when any task declares it, else a chain."""
        tasks = list(tasks)
        if not any(t.depends_on for t in tasks):
            return cls.chain(tasks, name)
        index: dict[str, int] = {}
        for i, task in enumerate(tasks):
            if not task.name:
                raise SpecError("every task needs a 'name' when tasks use depends_on",
                                where=task.where())
            if task.name in index:
                raise SpecError(f"two tasks are named {task.name!r}", where=task.where("name"))
            index[task.name] = i
        edges = []
        for i, task in enumerate(tasks):
            for parent in task.depends_on:
                if parent not in index:
                    import difflib

                    close = difflib.get_close_matches(parent, list(index), n=1)
                    raise SpecError(f"depends_on names unknown task {parent!r}",
                                    where=task.where("depends_on"),
                                    hint=f"did you mean {close[0]!r}?" if close else
                                    f"tasks in this file: {', '.join(index)}")
                edges.append((index[parent], i))
        return cls(tasks, edges, name)

    def _topological_order(self) -> list[int]:
        """Kahn's algorithm, smallest index first, so file order is kept where it can be."""
        import heapq

        children: list[list[int]] = [[] for _ in self.tasks]
        indegree = [0] * len(self.tasks)
        for u, v in self.edges:
            children[u].append(v)
            indegree[v] += 1
        heap = [i for i, d in enumerate(indegree) if d == 0]
        heapq.heapify(heap)
        order = []
        while heap:
            u = heapq.heappop(heap)
            order.append(u)
            for v in children[u]:
                indegree[v] -= 1
                if indegree[v] == 0:
                    heapq.heappush(heap, v)
        if len(order) != len(self.tasks):
            stuck = next(i for i, d in enumerate(indegree) if d > 0)
            cycle = self._cycle_through(stuck, children)
            names = " -> ".join(self.tasks[i].name or f"#{i}" for i in cycle)
            raise SpecError(f"dependency cycle: {names}",
                            where=self.tasks[cycle[0]].where("depends_on"),
                            hint="remove one of these depends_on entries")
        return order

    def _cycle_through(self, start: int, children: list[list[int]]) -> list[int]:
        """A cycle reachable from `start` (for the error message)."""
        path: list[int] = []
        on_path: dict[int, int] = {}
        node = start
        while node not in on_path:
            on_path[node] = len(path)
            path.append(node)
            node = next(v for v in children[node] if self._reaches(v, node, children)
                        or v in on_path)
        return [*path[on_path[node]:], node]

    def _reaches(self, src: int, dst: int, children: list[list[int]]) -> bool:
        seen, stack = set(), [src]
        while stack:
            u = stack.pop()
            if u == dst:
                return True
            if u not in seen:
                seen.add(u)
                stack.extend(children[u])
        return False

    def parents(self, i: int) -> list[int]:
        return [u for u, v in self.edges if v == i]

    def __len__(self) -> int:
        return len(self.tasks)

    def __repr__(self) -> str:
        return f"Dag(name={self.name!r}, tasks={len(self.tasks)}, edges={len(self.edges)})"


def load_dag(path: str | Path) -> Dag:
    """Read a task file: one task, a chain (several documents), or a DAG (`depends_on`)."""
    from skyhop.spec.yaml_source import MAX_FILE_BYTES

    path = Path(path)
    try:
        with path.open("rb") as fh:  # at most one byte past the bound: never a huge read
            data = fh.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise SpecError(f"task file {str(path)!r} is larger than {MAX_FILE_BYTES} bytes",
                            hint="keep data out of the task file (use file_mounts or a "
                                 "bucket)")
        text = data.decode()
    except FileNotFoundError:
        raise SpecError(f"task file {str(path)!r} does not exist",
                        hint="give the path of a task YAML file, or a command in quotes"
                        ) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read task file {str(path)!r}: {exc}") from None
    return parse_dag(text, str(path))


def parse_dag(text: str, filename: str = "<string>") -> Dag:
    docs = load_documents(text, filename)
    if not docs:
        raise SpecError("the task file is empty", where=filename,
                        hint="a task needs at least a 'run' command")
    name = None
    if len(docs) > 1 and isinstance(docs[0][0], dict) and set(docs[0][0]) == {"name"}:
        name = docs[0][0]["name"]  # SkyPilot pipeline header document
        check_name(name, "pipeline", where=docs[0][1].where(("name",)))
        docs = docs[1:]
    tasks = [Task.from_dict(data, locator) for data, locator in docs]
    if name is None and len(tasks) == 1:
        name = tasks[0].name
    return Dag.from_tasks(tasks, name)


def with_secret_names(dag: Dag, secrets: dict[str, str] | None) -> Dag:
    """The DAG with `secrets`' names listed among every task's secrets, so their values
    travel as secrets (the agent's memory only), not as envs."""
    if not secrets:
        return dag
    tasks = [t.model_copy(update={"secrets": {**t.secrets, **dict.fromkeys(
        k for k in secrets if k not in t.secrets)}}) for t in dag.tasks]
    return Dag(tasks, dag.edges, dag.name)
