"""The ``tickwire`` command line.

``tickwire serve`` takes every setting of :class:`~tickwire.config.Settings` as an option
(``--data-dir``, ``--seed``, ``--rate``, ``--backfill-days`` ...); each can also come from
``TICKWIRE_<NAME>`` or a TOML file given by ``--config``. Invalid settings print one line and
exit with code 2.
"""

from __future__ import annotations

import enum
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import click
import uvicorn

from . import __version__
from .config import Settings, load_settings
from .errors import ConfigError, TickwireError
from .node import BackfillProgress

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tickwire")
def cli() -> None:
    """tickwire: a self-hosted forex market-data server (REST and a gap-free stream)."""


def _settings_options(func: Any) -> Any:
    """Add one option per Settings field, typed, with the field's doc as help."""
    docs = Settings.field_docs()
    defaults = Settings()
    hints = get_type_hints(Settings)
    for name in reversed(Settings.__struct_fields__):
        default = getattr(defaults, name)
        flag = name.replace("_", "-")
        env = f"TICKWIRE_{name.upper()}"
        help_text = f"{docs.get(name, '')} [env {env}; default: {_show(default)}]"
        annotation = hints.get(name)
        if isinstance(default, bool):
            option = click.option(f"--{flag}/--no-{flag}", name, default=None, help=help_text)
        else:
            option = click.option(
                f"--{flag}",
                name,
                default=None,
                type=str,
                metavar=_metavar(annotation, default),
                help=help_text,
            )
        func = option(func)
    return func


def _show(value: Any) -> str:
    return str(getattr(value, "value", value))


def _metavar(annotation: Any, default: Any) -> str:
    """A metavar from the resolved type: DIR, INT, FLOAT, or the choices of an enum/Literal."""
    choices: tuple[Any, ...] = ()
    for arg in (annotation, *get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, enum.Enum):
            choices = tuple(m.value for m in arg)
        elif get_origin(arg) is Literal:
            choices = get_args(arg)
    if choices:
        return "[" + "|".join(map(str, choices)) + "]"
    if isinstance(default, Path):
        return "DIR"
    if isinstance(default, float) or "float" in str(annotation):
        return "FLOAT"
    if isinstance(default, int):
        return "INT"
    return "TEXT"


@cli.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help="TOML file with settings (a [tickwire] table or top-level keys). [env TICKWIRE_CONFIG]",
)
@_settings_options
def serve(config_file: Path | None, **options: Any) -> None:
    """Run the server: simulator feed, journal, store, REST and stream on one port."""
    try:
        settings = load_settings(options, env=os.environ, config_file=config_file)
    except ConfigError as exc:
        click.echo(f"tickwire: {exc}", err=True)
        sys.exit(2)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    from .access import FileKeyStore, RedactApiKeys, ensure_demo_key
    from .server.app import create_app

    logging.getLogger("uvicorn.access").addFilter(RedactApiKeys())
    # picows warns on every connection whose send buffer crosses its high-water mark; the
    # gateways apply their own slow-consumer policy and log what they do about it
    logging.getLogger("picows").setLevel(max(logging.ERROR, logging.getLogger().level))
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        demo_key = ensure_demo_key(FileKeyStore(settings.data_dir / "keys.json"), settings.data_dir)
        progress = _BackfillBar() if sys.stderr.isatty() else _BackfillLog()
        app = create_app(settings, progress=progress)
    except (TickwireError, OSError) as exc:
        click.echo(f"tickwire: cannot start: {exc}", err=True)
        sys.exit(2)
    server = _Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            lifespan="on",
            ws="none",
            access_log=settings.log_level == "debug",
        ),
        settings,
        demo_key,
    )
    server.run()
    progress.close()
    if not server.started:
        sys.exit(1)


class _Server(uvicorn.Server):
    """uvicorn, plus a banner with the URLs once the socket is bound."""

    def __init__(self, config: uvicorn.Config, settings: Settings, demo_key: str | None) -> None:
        super().__init__(config)
        self.settings = settings
        self.demo_key = demo_key

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGINT/SIGTERM: shut down cleanly and exit 0 (a second SIGINT forces the exit).

        uvicorn would re-raise the signal after shutting down, which makes a clean stop look
        like a crash to supervisors; tickwire reports a clean stop with exit code 0 instead.
        """
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        port = self.settings.port
        for server in self.servers:
            for sock in server.sockets:
                port = sock.getsockname()[1]
        base = f"http://{self.settings.host}:{port}"
        if self.demo_key:
            key = f"api_key={self.demo_key}"
            links = (
                f"  demo key  {self.demo_key}\n"
                f"  dashboard {base}/?{key}\n"
                f"  quotes    {base}/v1/quotes?symbols=EURUSD,GBPUSD,USDJPY&{key}\n"
                f"  bars      {base}/v1/bars/EURUSD?unit=hour&limit=24&{key}\n"
                f"  TM live   {base}/api/v1/live?currency=EURUSD,GBPUSD&{key}\n"
            )
        else:
            links = "  the demo key was revoked; create one: tickwire keys create --name NAME\n"
        click.echo(
            f"\ntickwire {__version__} serving the simulator from {self.settings.data_dir}\n"
            f"{links}"
            f"  API docs  {base}/docs\n"
            f"  health    {base}/health\n",
            err=True,
        )


class _BackfillBar:
    """A rich progress bar for the backfill, on a terminal."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("backfill"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%  {task.fields[ticks]:,} ticks"),
            TimeElapsedColumn(),
            transient=False,
        )
        self._task: Any = None

    def __call__(self, state: BackfillProgress) -> None:
        if self._task is None:
            if state.done and state.ticks == 0:
                return
            self._progress.start()
            self._task = self._progress.add_task("backfill", total=1.0, ticks=0)
        self._progress.update(self._task, completed=state.fraction, ticks=state.ticks)
        if state.done:
            self._progress.stop()

    def close(self) -> None:
        self._progress.stop()


class _BackfillLog:
    """Backfill progress as log lines, every 10 %, when stderr is not a terminal."""

    def __init__(self) -> None:
        self._next = 0.0
        self._log = logging.getLogger("tickwire.backfill")

    def __call__(self, state: BackfillProgress) -> None:
        if state.fraction >= self._next or state.done:
            if not (state.done and state.ticks == 0):
                self._log.info("backfill %3.0f%%, %d ticks", state.fraction * 100, state.ticks)
            self._next = state.fraction + 0.1

    def close(self) -> None:
        pass


def _register_subcommands() -> None:
    from .access.cli import keys
    from .benchmarks.cli import register as register_bench
    from .cli_data import register

    cli.add_command(keys)
    register(cli)
    register_bench(cli)


_register_subcommands()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``tickwire`` console script."""
    cli.main(args=argv, prog_name="tickwire")


if __name__ == "__main__":  # pragma: no cover
    main()
