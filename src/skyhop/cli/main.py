"""The `skyhop` command. Thin: parse arguments, call the library, print.

Heavy modules (numpy, highspy, pydantic) are imported inside the commands that need them,
so `skyhop --help` stays fast.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from skyhop.cli import clusters, infra, jobs, simulate, tracker
from skyhop.cli.common import print_json
from skyhop.errors import UserError

app = typer.Typer(
    name="skyhop",
    help="Run tasks on the cheapest or fastest place across every cloud you can reach.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
catalog_app = typer.Typer(help="Browse offers and prices of every provider.",
                          no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
clusters.register(app)
tracker.register(app)
infra.register(app)
jobs.register(app)
simulate.register(app)

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"skyhop {version('skyhop')}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    _state["debug"] = debug


@app.command()
def optimize(
    file: Annotated[str, typer.Argument(help="Task YAML: one task, a chain, or a DAG.")],
    minimize: Annotated[str, typer.Option(help="What to minimise: cost or time.")] = "cost",
    deadline: Annotated[str | None, typer.Option(
        help="With --minimize cost: finish within this time (e.g. 6, 90m, 36h, 2d).")] = None,
    budget: Annotated[float | None, typer.Option(
        help="With --minimize time: spend at most this many USD.")] = None,
    infra: Annotated[list[str] | None, typer.Option(
        "--infra", help="Only place tasks here (repeatable; globs: aws/us-*, gcp/europe-*).")
    ] = None,
    block: Annotated[list[str] | None, typer.Option(
        "--block", help="Avoid provider[/region[/zone[/type]]][:spot|:on-demand] (repeatable).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Plan where each task of FILE runs, by cost (default) or completion time."""
    from skyhop.optimizer import Blocklist
    from skyhop.optimizer import optimize as run_optimize
    from skyhop.spec import load_dag
    from skyhop.spec.fields import parse_hours

    deadline_hours = _option(parse_hours, deadline, "--deadline")
    if budget is not None and budget <= 0:
        raise UserError("--budget must be a positive number of USD")
    allowed = [_option(_infra, text, "--infra") for text in infra or []]
    dag = load_dag(file)
    plan = run_optimize(dag, _catalog_for(dag, allowed), minimize=minimize,
                        deadline=deadline_hours, budget=budget, allowed_infra=allowed,
                        blocklist=Blocklist.parse(block or []))
    if as_json:
        print_json(plan.to_json())
    else:
        from skyhop.cli.render import print_plan

        print_plan(plan, dag)


def _catalog_for(dag, allowed):
    """The shipped catalog; plus this machine when a task or --infra names `local`."""
    from skyhop.catalog.catalog import load_catalog

    catalog = load_catalog()
    patterns = list(allowed) + [alt.infra for task in dag.tasks
                                for alt in task.resources.alternatives() if alt.infra]
    if any(p.provider == "local" for p in patterns):
        from skyhop.provision import registry

        catalog = catalog.merged(registry.get("local").offers(catalog.accelerators))
    return catalog


def _infra(text: str):
    from skyhop.spec.fields import parse_infra

    return parse_infra(text)


def _option(parse, value, flag: str):
    if value is None:
        return None
    try:
        return parse(value)
    except ValueError as exc:
        raise UserError(f"{flag}: {exc}") from None


@catalog_app.command("gpus")
def catalog_gpus(
    name: Annotated[str | None, typer.Argument(help="Accelerator name, e.g. A100 or h100.")
                    ] = None,
    provider: Annotated[list[str] | None, typer.Option(
        "--provider", "-p", help="Only this provider (repeatable).")] = None,
    all_regions: Annotated[bool, typer.Option(
        "--all-regions", help="One row per region instead of the cheapest.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Accelerators on offer: cheapest on-demand and spot price per provider and count."""
    from skyhop.catalog.listing import gpu_rows, gpu_summary

    providers = [_option(_provider, p, "--provider") for p in provider or []]
    if name is None and not all_regions:
        rows = gpu_summary(providers=providers)
    else:
        rows = gpu_rows(name, providers=providers, all_regions=all_regions)
    if as_json:
        print_json(rows)
        return
    from skyhop.cli.render import print_rows

    label = rows[0]["accelerator"] if name and rows else "Accelerators"
    print_rows(rows, title=f"{label} (USD per hour, whole instance)")


def _provider(text: str) -> str:
    from skyhop.spec.fields import provider_name

    return provider_name(text)


@catalog_app.command("offers")
def catalog_offers(
    gpus: Annotated[str | None, typer.Option(
        "--gpus", help="Accelerators, e.g. A100:8 or 'A100:8,H100:8' (any of).")] = None,
    cpus: Annotated[str | None, typer.Option(help="vCPUs: 8 (exactly) or 8+ (at least).")
                    ] = None,
    memory: Annotated[str | None, typer.Option(help="GiB: 32, 32+, or 4x (per vCPU).")] = None,
    instance_type: Annotated[str | None, typer.Option("--instance-type")] = None,
    infra: Annotated[str | None, typer.Option(
        help="Where: aws, aws/us-east-1, gcp/*/us-central1-a, */eu-*.")] = None,
    spot: Annotated[bool, typer.Option("--spot", help="Spot prices only.")] = False,
    limit: Annotated[int, typer.Option(help="Show at most this many (0: all).")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Offers meeting the requirements, cheapest first."""
    from pydantic import ValidationError

    from skyhop.catalog.listing import offer_rows
    from skyhop.spec import Resources

    fields = {"accelerators": gpus, "cpus": cpus, "memory": memory,
              "instance_type": instance_type, "infra": infra, "use_spot": spot}
    try:
        resources = Resources(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        raise UserError(f"--{str(err['loc'][0]).replace('accelerators', 'gpus')}: {msg}"
                        ) from None
    rows = offer_rows(resources, limit=limit or None)
    if as_json:
        print_json(rows)
        return
    from skyhop.cli.render import print_rows

    print_rows(rows, title=f"Offers for {resources.describe()} (USD per hour)")


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print one message and exit 2; --debug shows tracebacks."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        # Without standalone mode, click returns typer.Exit's code instead of exiting.
        code = app(args=args, prog_name="skyhop", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except UserError as exc:
        if debug:
            raise
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("aborted\n")
        sys.exit(130)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except Exception as exc:  # click usage errors and anything unexpected
        from typer._click.exceptions import ClickException

        if isinstance(exc, ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if debug:
            raise
        sys.stderr.write(f"error: unexpected {type(exc).__name__}: {exc}\n"
                         "  (run again with --debug for the traceback; please report it)\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
