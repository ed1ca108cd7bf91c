"""`skyhop tracker show`: what the tracker has observed about provisioning attempts, and its
availability estimate per place. Thin: read the state, print."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from skyhop.cli.common import JsonOption, age, print_json
from skyhop.errors import UserError

HORIZON_LABEL = "last 2 days"  # the window TrackerStore.tracker loads (store.HORIZON_S)


def register(app: typer.Typer) -> None:
    tracker_app = typer.Typer(help="Observed provisioning attempts and availability.",
                              no_args_is_help=True)
    app.add_typer(tracker_app, name="tracker")

    @tracker_app.command("show")
    def show(
        provider: Annotated[str | None, typer.Option(
            "--provider", "-p", help="Only this provider.")] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Availability estimated from recent attempts, per provider, zone, type and market."""
        from skyhop.tracker.store import TrackerStore

        now = time.time()
        estimates = TrackerStore().tracker(now).estimates(now)
        if provider is not None:
            wanted = _provider(provider, {e.key.provider for e in estimates})
            estimates = [e for e in estimates if e.key.provider == wanted]
        estimates.sort(key=lambda e: (e.key.provider, e.key.zone or "", e.key.instance_type,
                                      e.key.region or "", e.key.spot))
        if as_json:
            print_json([{**e.to_json(), "region": e.key.region} for e in estimates])
            return
        if not estimates:
            where = f" for {provider}" if provider else ""
            typer.echo(f"no provisioning attempts recorded yet{where} ({HORIZON_LABEL})")
            return
        from skyhop.cli.render import print_rows

        print_rows([{"provider": e.key.provider, "region": e.key.region or "-",
                     "zone": e.key.zone or "-", "instance_type": e.key.instance_type,
                     "spot": "yes" if e.key.spot else "no",
                     "availability": f"{e.availability:.0%}", "weight": f"{e.weight:.2f}",
                     "attempts": e.attempts, "last_outcome": e.last_outcome,
                     "last_attempt": age(e.last_at, now)} for e in estimates],
                   title=f"Observed availability ({HORIZON_LABEL})")


def _provider(text: str, recorded: set[str]) -> str:
    """A provider as recorded (e.g. a simulated one), else its canonical name."""
    name = text.strip().lower()
    if name in recorded:
        return name
    from skyhop.spec.fields import provider_name

    try:
        return provider_name(text)
    except ValueError as exc:
        raise UserError(f"--provider: {exc}") from None
