"""Rich tables for plans and catalog listings."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from skyhop.optimizer.plan import Plan
    from skyhop.spec.dag import Dag

# Piped output has no terminal width; give tables room rather than wrapping every cell.
_console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def _num(value: float | None, fmt: str = "{:g}") -> str:
    return "-" if value is None or value != value else fmt.format(value)


def _accelerators(acc: dict[str, float] | None) -> str:
    return ", ".join(f"{n}:{c:g}" for n, c in acc.items()) if acc else "-"


def print_plan(plan: Plan, dag: Dag) -> None:
    considered = Table(title="Considered resources (best offer per provider)",
                       title_justify="left")
    for column in ("TASK", "INFRA", "INSTANCE", "vCPUs", "Mem(GB)", "GPUS", "SPOT",
                   "$/h/node", "EST HOURS", "EST COST ($)", "CHOSEN"):
        considered.add_column(column, justify="right" if column[0] in "v$EM" else "left")
    hours = {p.name: p.est_hours for p in plan.tasks}
    for c in plan.considered:
        considered.add_row(
            c.task, "/".join(x for x in (c.provider, c.region, c.zone) if x), c.instance_type,
            _num(c.vcpus), _num(c.memory_gib), _accelerators(c.accelerators),
            "yes" if c.use_spot else "", _num(c.hourly_price, "{:.4f}"),
            _num(hours[c.task]) if c.chosen else "", _num(c.est_cost, "{:.2f}"),
            "✔" if c.chosen else "", style="bold green" if c.chosen else None)
    _console.print(considered)

    chosen = Table(title=f"Plan (minimising {plan.objective})", title_justify="left")
    for column in ("TASK", "INFRA", "INSTANCE", "GPUS", "NODES", "SPOT", "$/h/node",
                   "EST HOURS", "EST COST ($)"):
        chosen.add_column(column)
    for p in plan.tasks:
        chosen.add_row(p.name, p.infra, p.instance_type, _accelerators(p.accelerators),
                       str(p.num_nodes), "yes" if p.use_spot else "",
                       _num(p.hourly_price, "{:.4f}"), _num(p.est_hours),
                       _num(p.est_cost, "{:.2f}"))
    _console.print(chosen)

    if plan.egress:
        egress = Table(title="Data movement", title_justify="left")
        for column in ("FROM", "TO", "ROUTE", "GB", "COST ($)"):
            egress.add_column(column)
        for t in plan.egress:
            egress.add_row(t.src, t.dst, f"{t.src_location} -> {t.dst_location}",
                           _num(t.gigabytes), _num(t.cost, "{:.2f}"))
        _console.print(egress)
    _console.print(
        f"Total: [bold]${plan.total_cost:,.2f}[/bold] (compute ${plan.compute_cost:,.2f}, "
        f"egress ${plan.egress_cost:,.2f}), about {plan.total_hours:g} h"
        + (f" for {len(dag)} tasks" if len(dag) > 1 else ""))


def print_rows(rows: list[dict], title: str) -> None:
    if not rows:
        _console.print("nothing matches")
        return
    table = Table(title=title, title_justify="left")
    columns = list(rows[0])
    for column in columns:
        table.add_column(column.upper().replace("_", " "))
    for row in rows:
        table.add_row(*(_cell(row[c]) for c in columns))
    _console.print(table)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return _accelerators(value)
    if isinstance(value, list):
        return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
