"""Turn pydantic validation errors into SpecErrors that point at the YAML source."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from pydantic import ValidationError

from skyhop.errors import SpecError

if TYPE_CHECKING:
    from skyhop.spec.yaml_source import Locator

_MAX_SHOWN = 5


def _message(err: dict, model_fields: dict[tuple, list[str]]) -> tuple[tuple, str, bool]:
    """(path, message, points_at_key) for one pydantic error."""
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    kind = err["type"]
    if kind == "extra_forbidden":
        field = loc[-1]
        known = model_fields.get(loc[:-1], [])
        close = difflib.get_close_matches(str(field), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return loc, f"unknown field {field!r}{hint}", True
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    name = ".".join(str(p) for p in loc) or "value"
    if kind == "missing":
        return loc, f"missing required field {name!r}", True
    return loc, f"{name}: {msg}", False


def _fields_by_path(exc: ValidationError, root_fields: list[str]) -> dict[tuple, list[str]]:
    """Known field names of the model at each error's parent path, for 'did you mean'."""
    from skyhop.spec.resources import Resources

    resource_fields = list(Resources.model_fields) + ["cloud", "region", "zone"]
    table: dict[tuple, list[str]] = {(): root_fields}
    for err in exc.errors():
        parent = tuple(err["loc"][:-1])
        if (parent and ("resources" in parent or parent[-1] in ("any_of", "ordered")
                       or isinstance(parent[-1], int))) or parent == ("resources",):
            table[parent] = resource_fields
    return table


def spec_error_from_validation(exc: ValidationError, model: str,
                               locator: Locator | None = None,
                               task_name: str | None = None) -> SpecError:
    from skyhop.spec.resources import Resources

    root = (list(Resources.model_fields) + ["cloud", "region", "zone"] if model == "Resources"
            else _task_fields())
    table = _fields_by_path(exc, root)
    lines = []
    errors = exc.errors()
    for err in errors[:_MAX_SHOWN]:
        path, message, at_key = _message(err, table)
        if locator is not None:
            where = locator.where(path, key=at_key)
        else:
            where = f"{task_name or model}"
        lines.append(f"{where}: {message}")
    if len(errors) > _MAX_SHOWN:
        lines.append(f"... and {len(errors) - _MAX_SHOWN} more")
    first, *rest = lines
    where, _, message = first.partition(": ")
    error = SpecError(message if not rest else "\n".join([message, *rest]), where=where)
    return error


def _task_fields() -> list[str]:
    from skyhop.spec.task import Task

    return list(Task.model_fields)
