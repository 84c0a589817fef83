"""Settings: one typed object, read once at start-up from the CLI, the environment and a file.

Precedence, highest first: command-line options, environment variables ``TICKWIRE_<NAME>``
(for example ``TICKWIRE_PORT=9000``), the TOML config file (``--config PATH`` or
``TICKWIRE_CONFIG``), then the defaults below. Invalid settings raise :class:`ConfigError`
naming the setting and where its value came from; the CLI turns that into exit code 2.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from .errors import ConfigError
from .journal import SyncPolicy

__all__ = ["ENV_PREFIX", "Settings", "load_settings"]

ENV_PREFIX = "TICKWIRE_"

Positive = msgspec.Meta(gt=0)


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything the server can be told. Field docs are the ``--help`` texts."""

    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: Annotated[int, msgspec.Meta(ge=0, le=65_535)] = 8000
    """TCP port (0 picks a free one)."""
    stream_port: Annotated[int, msgspec.Meta(ge=0, le=65_535)] = 8001
    """WebSocket stream port (native /v1/stream and the TraderMade streams; 0 picks one)."""
    data_dir: Path = Path("./data")
    """Directory for the journal, the store and the keys."""
    seed: int = 7
    """Simulator seed: the same seed gives the same market."""
    rate: Annotated[float, Positive] = 20.0
    """Simulator: mean ticks per second over all symbols at average activity."""
    load_rate: Annotated[float, Positive] | None = None
    """Simulator load mode: emit exactly this many ticks per second, ignoring sessions."""
    sim_step_ms: Annotated[float, msgspec.Meta(ge=1, le=1_000)] = 100.0
    """Simulator: how often the live feed wakes up and emits the ticks due (ms)."""
    weekend_closed: bool = True
    """Simulator: no FX or metal ticks from Friday 22:00 to Sunday 22:00 UTC."""
    backfill_days: Annotated[float, msgspec.Meta(ge=0, le=3_650)] = 30.0
    """History generated on first start (and to fill a gap after downtime); 0 disables."""
    backfill_rate: Annotated[float, Positive] = 4.0
    """Simulator: mean ticks per second over all symbols in backfilled history."""
    sync: SyncPolicy = SyncPolicy.FSYNC
    """Journal durability: fsync (survives power loss) or none (survives process crashes)."""
    commit_max_ticks: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 100_000
    """Most ticks in one group commit."""
    commit_delay_ms: Annotated[float, msgspec.Meta(ge=0, le=1_000)] = 0.0
    """How long a group commit may wait to fill (0: commit as soon as the last one is done)."""
    queue_ticks: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)] = 1_000_000
    """Most ticks waiting for a commit before feeds are slowed down."""
    ring_ticks: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)] = 1_000_000
    """Recent ticks kept in memory for cheap resume."""
    segment_mb: Annotated[int, msgspec.Meta(ge=1, le=4_096)] = 256
    """Journal segment size in MiB."""
    tick_retention_days: Annotated[float, msgspec.Meta(ge=0)] = 90.0
    """Raw ticks older than this are dropped from the store (bars are kept); 0 keeps all."""
    stream_flush_ms: Annotated[float, msgspec.Meta(ge=0, le=1_000)] = 2.0
    """Streams (native and TraderMade): at most one write per connection per this many ms (0: as
    soon as ticks arrive); shorter means lower latency, longer means fewer, larger writes."""
    store_flush_ms: Annotated[float, msgspec.Meta(ge=1, le=60_000)] = 100.0
    """How often the store writer applies new ticks to the history store (at most; under load it
    also rests 9× as long as an apply took, at most 1 s)."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Logging level: debug, info, warning or error."""

    @classmethod
    def field_docs(cls) -> dict[str, str]:
        """Help text of each field (from the attribute docstrings above)."""
        return dict(_FIELD_DOCS)


def _field_docs() -> dict[str, str]:
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(Settings))
    docs: dict[str, str] = {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
        ):
            docs[node.target.id] = str(following.value.value)
    return docs


_FIELD_DOCS = _field_docs()
FIELDS = tuple(Settings.__struct_fields__)


def load_settings(
    cli: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Merge the sources (see the module docstring) into validated :class:`Settings`.

    ``cli`` holds only the options the user gave; None values are ignored.
    """
    env = {} if env is None else env
    merged: dict[str, Any] = {}
    source: dict[str, str] = {}

    path = config_file
    if path is None and env.get(f"{ENV_PREFIX}CONFIG"):
        path = Path(env[f"{ENV_PREFIX}CONFIG"])
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        section = data.get("tickwire", data)
        for key, value in section.items():
            name = key.replace("-", "_")
            if name not in FIELDS:
                raise ConfigError(f"unknown setting {key!r} in config file {path}")
            merged[name], source[name] = value, f"config file {path}"

    for name in FIELDS:
        value = env.get(ENV_PREFIX + name.upper())
        if value is not None:
            merged[name], source[name] = value, f"environment variable {ENV_PREFIX}{name.upper()}"

    for name, value in (cli or {}).items():
        if value is not None:
            merged[name], source[name] = value, f"option --{name.replace('_', '-')}"

    try:
        return msgspec.convert(merged, Settings, strict=False, dec_hook=_decode_path)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(exc, source)) from exc


def _decode_path(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError


def _explain(exc: msgspec.ValidationError, source: Mapping[str, str]) -> str:
    message = str(exc)
    text, _, where = message.rpartition(" - at `$.")
    if where:
        name = where.rstrip("`").split(".")[0].split("[")[0]
        origin = source.get(name, "default")
        return f"invalid setting {name} (from {origin}): {text}"
    return f"invalid settings: {message}"
