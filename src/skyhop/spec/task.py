"""`Task`: one unit of work. Accepts SkyPilot's task YAML unchanged, plus skyhop's fields
(`depends_on`, `estimated_hours`, richer `inputs`/`outputs`)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from skyhop.errors import SpecError
from skyhop.names import check_env_name, check_name
from skyhop.spec.fields import parse_hours
from skyhop.spec.resources import Resources, SpecModel
from skyhop.spec.yaml_source import Locator

# Object-store URI schemes -> the provider that holds the data.
_SCHEME_PROVIDER = {"s3": "aws", "gs": "gcp", "gcs": "gcp", "az": "azure", "abfs": "azure",
                    "abfss": "azure", "r2": "cloudflare", "file": "local", "local": "local"}


class DataRef(SpecModel):
    """A data set a task reads or writes: where it lives and how big it is."""

    uri: str | None = None
    gigabytes: float = 0.0
    region: str | None = None  # where the bucket is, when known (skyhop extension)

    @property
    def provider(self) -> str | None:
        if not self.uri or "://" not in self.uri:
            return None
        scheme = self.uri.split("://", 1)[0].lower()
        if scheme == "https" and ".blob.core.windows.net" in self.uri:
            return "azure"
        return _SCHEME_PROVIDER.get(scheme)


def _gigabytes(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{what} must be a size in GB (a number >= 0)")
    return float(value)


def parse_data_refs(value: Any) -> tuple[DataRef, ...]:
    """`10` (GB), `s3://bucket/path`, `{s3://bucket/path: 10}` (SkyPilot's form) or
    `{s3://bucket/path: {gigabytes: 10, region: us-east-1}}`."""
    if value is None:
        return ()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (DataRef(gigabytes=_gigabytes(value, "size")),)
    if isinstance(value, str):
        return (DataRef(uri=value),)
    if isinstance(value, dict):
        refs = []
        for uri, spec in value.items():
            if isinstance(spec, dict):
                unknown = set(spec) - {"gigabytes", "region"}
                if unknown:
                    raise ValueError(f"unknown key {sorted(unknown)[0]!r} for {uri!r}; "
                                     "use 'gigabytes' and 'region'")
                refs.append(DataRef(uri=str(uri),
                                    gigabytes=_gigabytes(spec.get("gigabytes", 0), "gigabytes"),
                                    region=spec.get("region")))
            else:
                refs.append(DataRef(uri=str(uri),
                                    gigabytes=_gigabytes(spec or 0, f"size of {uri!r}")))
        return tuple(refs)
    raise ValueError("must be a size in GB, a URI, or a mapping {URI: GB}")


# What one task may carry: past these the node side would be asked to hold more than any
# task needs (the file itself is bounded too, see yaml_source.MAX_FILE_BYTES).
MAX_COMMAND_BYTES = 8 << 20  # each of run and setup
MAX_ENV_BYTES = 32 << 20  # envs and secrets together, names and values

EnvName = Annotated[str, AfterValidator(check_env_name)]


class Task(SpecModel):
    """A task: setup and run commands, on `num_nodes` nodes meeting `resources`."""

    name: str | None = None
    workdir: str | None = None
    num_nodes: int = Field(default=1, ge=1)
    resources: Resources = Field(default_factory=Resources)
    envs: dict[EnvName, str | None] = Field(default_factory=dict)
    secrets: dict[EnvName, SecretStr | None] = Field(default_factory=dict)
    file_mounts: dict[str, Any] = Field(default_factory=dict)
    setup: str | None = None
    run: str | None = None
    inputs: tuple[DataRef, ...] = ()
    outputs: tuple[DataRef, ...] = ()
    config: dict[str, Any] | None = None
    depends_on: tuple[str, ...] = ()
    estimated_hours: float | dict[str, float] | None = None
    # SkyPilot fields accepted so its task files load unchanged; not acted upon yet.
    volumes: Any = None
    service: Any = None
    event_callback: Any = None
    _locator: Locator | None = PrivateAttr(default=None)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        return None if v is None else check_name(v, "task")

    @field_validator("envs", "secrets", mode="before")
    @classmethod
    def _string_values(cls, v: Any) -> Any:
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise ValueError("must be a mapping of NAME: value")
        out = {}
        for key, val in v.items():
            if isinstance(val, (dict, list)):
                raise ValueError(f"value of {key!r} must be a string, number or null")
            out[str(key)] = val if val is None or isinstance(val, SecretStr) else (
                str(val).lower() if isinstance(val, bool) else str(val))
        return out

    @field_validator("file_mounts", mode="before")
    @classmethod
    def _file_mounts(cls, v: Any) -> Any:
        return {} if v is None else v

    @field_validator("inputs", "outputs", mode="before")
    @classmethod
    def _data(cls, v: Any) -> Any:
        if isinstance(v, tuple) and all(isinstance(x, DataRef) for x in v):
            return v
        return parse_data_refs(v)

    @field_validator("depends_on", mode="before")
    @classmethod
    def _depends_on(cls, v: Any) -> Any:
        if v is None:
            return ()
        if isinstance(v, str):
            return (v,)
        if isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v):
            return tuple(v)
        raise ValueError("must be a task name or a list of task names")

    @field_validator("estimated_hours", mode="before")
    @classmethod
    def _estimated_hours(cls, v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, dict):
            if not v:
                raise ValueError("is an empty mapping; give {ACCELERATOR: hours}")
            return {str(k): parse_hours(h) for k, h in v.items()}
        return parse_hours(v)

    @field_validator("run", "setup", mode="before")
    @classmethod
    def _command(cls, v: Any) -> Any:
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return "\n".join(v)
        if isinstance(v, bool):  # `run: true` is the shell command, not a YAML boolean
            return str(v).lower()
        if isinstance(v, (int, float)):
            return str(v)
        return v

    @model_validator(mode="after")
    def _sizes(self) -> Task:
        for field in ("run", "setup"):
            size = len((getattr(self, field) or "").encode())
            if size > MAX_COMMAND_BYTES:
                raise ValueError(f"{field} is {size} bytes; at most {MAX_COMMAND_BYTES} "
                                 "(put a long script in the workdir and run it from there)")
        size = sum(len(k) + len(v or "") for k, v in self.envs.items()) + sum(
            len(k) + len(v.get_secret_value() if v is not None else "")
            for k, v in self.secrets.items())
        if size > MAX_ENV_BYTES:
            raise ValueError(f"envs and secrets hold {size} bytes; at most {MAX_ENV_BYTES} "
                             "(pass large data as a file mount instead)")
        return self

    @model_validator(mode="after")
    def _estimates_cover_accelerators(self) -> Task:
        if isinstance(self.estimated_hours, dict):
            for alt in self.resources.alternatives():
                if not alt.accelerators:
                    raise ValueError("estimated_hours per accelerator needs 'accelerators' in "
                                     "resources (or in every any_of entry)")
        return self

    @property
    def output_gigabytes(self) -> float:
        return sum(ref.gigabytes for ref in self.outputs)

    def __repr__(self) -> str:  # secrets stay masked by SecretStr
        return f"Task(name={self.name!r}, num_nodes={self.num_nodes}, " \
               f"resources={self.resources.describe()!r})"

    @classmethod
    def from_dict(cls, data: Any, locator: Locator | None = None) -> Task:
        """Validate one YAML document; errors point at `file:line:col` when `locator` is set."""
        from skyhop.spec.errors import spec_error_from_validation

        where = locator.where(()) if locator else None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise SpecError("a task must be a mapping of fields (name, resources, run, ...)",
                            where=where, hint="write one field per line, e.g. `run: echo hi`")
        try:
            task = cls.model_validate(data)
        except ValidationError as exc:
            raise spec_error_from_validation(exc, locator) from None
        task._locator = locator
        return task

    @property
    def locator(self) -> Locator | None:
        return self._locator

    def where(self, *path: str | int) -> str:
        """Where a field of this task was written, for error messages."""
        locator = self.locator
        if locator is not None:
            return locator.where(tuple(path))
        return f"task {self.name!r}" if self.name else "task"
