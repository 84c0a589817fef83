"""``tickwire keys``: create, list and revoke API keys in a data directory.

The commands work on ``<data-dir>/keys.json`` directly, so they can run while the server runs;
the server picks changes up within a few seconds. ``create`` prints the new key alone on
standard output (everything else goes to standard error), so ``KEY=$(tickwire keys create
--name alice)`` captures just the key. Errors print one line and exit with code 1 (2 for bad
usage).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import msgspec

from .keys import KEYS_FILE, PLANS, FileKeyStore, KeyRecord, KeyStoreError

__all__ = ["keys", "main"]

_PLAN_HELP = "; ".join(
    f"{p.name}: {p.rate:g}/s, burst {p.burst}, "
    f"{'unlimited' if p.monthly_quota is None else f'{p.monthly_quota:,}'}/month, "
    f"{p.max_connections} stream connection(s)"
    for p in PLANS.values()
)


def _data_dir_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="TICKWIRE_DATA_DIR",
        default=Path("./data"),
        show_default="./data",
        help="The server's data directory (keys are in keys.json). [env TICKWIRE_DATA_DIR]",
    )(func)


@contextlib.contextmanager
def _fail_cleanly() -> Iterator[None]:
    """Turn store and file errors into one line on stderr and exit code 1."""
    try:
        yield
    except KeyStoreError as exc:
        click.echo(f"tickwire keys: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        click.echo(f"tickwire keys: cannot access{where}: {exc.strerror or exc}", err=True)
        sys.exit(1)


def _open(data_dir: Path) -> FileKeyStore:
    return FileKeyStore(data_dir / KEYS_FILE)


def _quota(ctx: click.Context, param: click.Parameter, value: str | None) -> int | str | None:
    """``--monthly-quota``: a whole number ≥ 1, or 'unlimited'."""
    if value is None:
        return None
    text = value.strip().lower().replace("_", "").replace(",", "")
    if text in ("unlimited", "none"):
        return "unlimited"
    if text.isascii() and text.isdigit() and int(text) >= 1:
        return int(text)
    raise click.BadParameter(f"{value!r} is not a whole number ≥ 1 or 'unlimited'")


@click.group(
    "keys", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
def keys() -> None:
    """Manage API keys: create, list and revoke.

    Keys are stored hashed; a new key is shown once, when it is created. Changes reach a
    running server within a few seconds.
    """


@keys.command()
@click.option("--name", required=True, help="A label for the key, unique among active keys.")
@_data_dir_option
@click.option(
    "--plan",
    type=click.Choice(list(PLANS)),
    default="basic",
    show_default=True,
    help=f"Default limits. {_PLAN_HELP}.",
)
@click.option(
    "--symbols",
    default="*",
    show_default=True,
    help="Comma-separated symbols or globs the key may use, e.g. 'EUR*,GBPUSD'.",
)
@click.option("--rest/--no-rest", default=True, help="May use the REST API. [default: rest]")
@click.option("--stream/--no-stream", default=True, help="May use the stream. [default: stream]")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Requests per second.")
@click.option("--burst", type=click.IntRange(min=1), help="Requests allowed at once.")
@click.option(
    "--monthly-quota",
    metavar="INT|unlimited",
    callback=_quota,
    help="Requests per calendar month (UTC), or 'unlimited'.",
)
@click.option(
    "--max-connections", type=click.IntRange(min=0), help="Concurrent stream connections."
)
def create(
    name: str,
    data_dir: Path,
    plan: str,
    symbols: str,
    rest: bool,
    stream: bool,
    rate: float | None,
    burst: int | None,
    monthly_quota: int | str | None,
    max_connections: int | None,
) -> None:
    """Create a key and print it, alone, on the last line of standard output.

    Limits not given come from the plan. Store the key now: it cannot be shown again.
    """
    overrides: dict[str, Any] = {}
    if rate is not None:
        overrides["rate"] = rate
    if burst is not None:
        overrides["burst"] = burst
    if monthly_quota is not None:
        overrides["monthly_quota"] = None if monthly_quota == "unlimited" else monthly_quota
    if max_connections is not None:
        overrides["max_connections"] = max_connections
    with _fail_cleanly():
        store = _open(data_dir)
        key, record = store.create(
            name, plan=plan, symbols=symbols.split(","), rest=rest, stream=stream, **overrides
        )
    limits = record.limits
    quota = "unlimited" if limits.monthly_quota is None else f"{limits.monthly_quota:,}"
    click.echo(
        f"created key {record.id} {record.name!r} in {store.path}\n"
        f"  plan {record.plan}: {limits.rate:g}/s, burst {limits.burst}, {quota}/month, "
        f"{limits.max_connections} stream connection(s)\n"
        f"  symbols {','.join(record.entitlements.symbols)}; "
        f"rest {'yes' if record.entitlements.rest else 'no'}, "
        f"stream {'yes' if record.entitlements.stream else 'no'}\n"
        "  the key is shown once; store it now:",
        err=True,
    )
    click.echo(key)


@keys.command(name="list")
@_data_dir_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table for people, or JSON for scripts (the records, without any secret).",
)
def list_keys(data_dir: Path, fmt: str) -> None:
    """List keys (never the keys themselves): id, name, plan, created, revoked."""
    with _fail_cleanly():
        records = _open(data_dir).list()
    if fmt == "json":
        click.echo(msgspec.json.format(msgspec.json.encode(records)).decode())
        return
    _print_table(records)


def _print_table(records: list[KeyRecord]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("ID", "NAME", "PLAN", "CREATED", "REVOKED"):
        table.add_column(column, no_wrap=column != "NAME")
    for r in records:
        revoked = r.revoked_at.strftime("%Y-%m-%d %H:%M") if r.revoked_at else "yes"
        table.add_row(
            r.id,
            r.name,
            r.plan,
            r.created.strftime("%Y-%m-%d %H:%M"),
            revoked if r.revoked else "no",
        )
    if not records:
        click.echo("no keys", err=True)
        return
    Console(soft_wrap=False).print(table)


@keys.command()
@click.argument("id_or_name")
@_data_dir_option
def revoke(id_or_name: str, data_dir: Path) -> None:
    """Revoke a key by id, or by name (the active key of that name).

    Requests with the key are refused once the server has picked up the change (within a few
    seconds). Revoking is permanent; revoking twice is harmless.
    """
    with _fail_cleanly():
        store = _open(data_dir)
        record = store.get(id_or_name)
        if record.revoked:
            click.echo(f"key {record.id} {record.name!r} was already revoked", err=True)
            return
        record = store.revoke(record.id)
    click.echo(f"revoked key {record.id} {record.name!r}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Run the ``keys`` group on its own (``python -m tickwire.access.cli``)."""
    keys.main(args=argv, prog_name="tickwire keys")


if __name__ == "__main__":  # pragma: no cover
    main()
