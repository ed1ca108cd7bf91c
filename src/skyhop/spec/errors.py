"""Turn pydantic validation errors into SpecErrors that point at the YAML source."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from pydantic import ValidationError

from skyhop.errors import SpecError, UserError

if TYPE_CHECKING:
    from skyhop.spec.yaml_source import Locator

_MAX_SHOWN = 5
# skyhop reads SkyPilot's task YAML (and more): its reference documents every field.
_REFERENCE = "fields: https://docs.skypilot.co/en/latest/reference/yaml-spec.html"


def _known_fields(parent: tuple) -> list[str]:
    """Field names valid at `parent` (for "did you mean")."""
    from skyhop.spec.resources import Resources
    from skyhop.spec.task import Task

    if "resources" in parent:
        return [*Resources.model_fields, "cloud", "region", "zone"]
    return list(Task.model_fields)


def _describe(err: dict) -> tuple[tuple, str, bool]:
    """(path, message, whether to point at the key rather than the value) for one error."""
    path = tuple(err["loc"])
    cause = (err.get("ctx") or {}).get("error")
    if path and path[-1] == "[key]" and isinstance(cause, UserError):
        field = ".".join(str(p) for p in path[:-2])  # a mapping key was refused (env name)
        return path[:-1], f"{field}: {cause.message}" if field else cause.message, True
    if err["type"] == "extra_forbidden":
        field = str(path[-1])
        close = difflib.get_close_matches(field, _known_fields(path[:-1]), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return path, f"unknown field {field!r}{hint}", True
    message = cause.message if isinstance(cause, UserError) else (
        err["msg"].removeprefix("Value error, "))
    if not path:
        return path, message, False
    name = ".".join(str(p) for p in path)
    if err["type"] == "missing":
        return path, f"missing required field {name!r}", True
    return path, f"{name}: {message}", False


def spec_error_from_validation(exc: ValidationError, locator: Locator | None) -> SpecError:
    """One SpecError listing up to five problems, the first one's position in `where`."""
    errors = exc.errors()
    lines = []
    for err in errors[:_MAX_SHOWN]:
        path, message, at_key = _describe(err)
        where = locator.where(path, key=at_key) if locator is not None else "task"
        lines.append((where, message))
    (where, first), rest = lines[0], lines[1:]
    text = "\n".join([first, *(f"{w}: {m}" for w, m in rest)])
    if len(errors) > _MAX_SHOWN:
        text += f"\n... and {len(errors) - _MAX_SHOWN} more"
    cause = (errors[0].get("ctx") or {}).get("error")
    hint = getattr(cause, "hint", None)
    if hint is None and errors[0]["type"] == "extra_forbidden":
        hint = "fields here: " + ", ".join(_known_fields(tuple(errors[0]["loc"])[:-1]))
    elif hint is None:
        hint = f"fix the value at that position; {_REFERENCE}"
    return SpecError(text, where=where, hint=hint)
