"""CLI commands about providers: `check` (what can launch here) and `gc` (collect leaks)."""

from __future__ import annotations

import typer

from skyhop.cli.common import JsonOption, print_json


def register(app: typer.Typer) -> None:
    @app.command()
    def check(as_json: JsonOption = False) -> None:
        """Which providers can launch here, and for the others exactly what is missing."""
        from skyhop.provision import registry

        rows = []
        for name in registry.known():
            usable, reason = registry.check(name)
            rows.append({"provider": name, "enabled": usable, "reason": reason or None})
        if as_json:
            print_json(rows)
            return
        for row in rows:
            mark = "enabled " if row["enabled"] else "disabled"
            line = f"  {mark}  {row['provider']}"
            if row["reason"]:
                line += f": {row['reason']}"
            typer.echo(line)

    @app.command()
    def gc(as_json: JsonOption = False) -> None:
        """Reconcile state with the providers and terminate skyhop-tagged resources that no
        cluster owns (left by a crashed launch or a lost state file)."""
        from skyhop.execute.reconcile import gc as collect

        report = collect()
        if as_json:
            print_json({"changes": report.changes, "terminated": report.terminated,
                        "errors": report.errors})
        else:
            for line in report.changes or ["nothing to collect"]:
                typer.echo(line)
            for line in report.errors:
                typer.echo(f"error: {line}", err=True)
        if report.errors:
            raise typer.Exit(1)
