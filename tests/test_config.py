"""Settings: precedence of sources, validation, and the documented options."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickwire.config import Settings, load_settings
from tickwire.errors import ConfigError
from tickwire.journal import SyncPolicy

DOCS = Path(__file__).parent.parent / "docs" / "configuration.md"


def test_defaults() -> None:
    """With no sources, the documented defaults apply."""
    settings = load_settings()
    assert (settings.host, settings.port, settings.data_dir) == ("127.0.0.1", 8000, Path("data"))
    assert settings.backfill_days == 30 and settings.sync is SyncPolicy.FSYNC


def test_precedence_cli_over_env_over_file(tmp_path: Path) -> None:
    """Options beat TICKWIRE_* variables, which beat the config file, which beats defaults."""
    config = tmp_path / "tickwire.toml"
    config.write_text('[tickwire]\nport = 7000\nseed = 11\nrate = 5.5\ndata-dir = "/srv/tw"\n')
    settings = load_settings(
        {"port": "9000", "seed": None},
        env={"TICKWIRE_PORT": "8001", "TICKWIRE_SEED": "12", "TICKWIRE_WEEKEND_CLOSED": "false"},
        config_file=config,
    )
    assert settings.port == 9000
    assert settings.seed == 12
    assert settings.rate == 5.5
    assert settings.data_dir == Path("/srv/tw")
    assert settings.weekend_closed is False


def test_config_file_from_environment(tmp_path: Path) -> None:
    """TICKWIRE_CONFIG names the config file when --config is not given."""
    config = tmp_path / "c.toml"
    config.write_text("backfill_days = 2\n")
    assert load_settings(env={"TICKWIRE_CONFIG": str(config)}).backfill_days == 2


@pytest.mark.parametrize(
    ("cli", "env", "message"),
    [
        ({"port": "70000"}, {}, "invalid setting port (from option --port)"),
        ({"rate": "0"}, {}, "invalid setting rate (from option --rate)"),
        ({}, {"TICKWIRE_SYNC": "sometimes"}, "from environment variable TICKWIRE_SYNC"),
        ({}, {"TICKWIRE_BACKFILL_DAYS": "lots"}, "invalid setting backfill_days"),
        ({"log_level": "loud"}, {}, "invalid setting log_level"),
    ],
)
def test_invalid_values_name_the_setting_and_source(
    cli: dict[str, str], env: dict[str, str], message: str
) -> None:
    """A bad value raises ConfigError naming the setting and where it came from."""
    with pytest.raises(ConfigError) as info:
        load_settings(cli, env=env)
    assert message in str(info.value)


def test_bad_config_files(tmp_path: Path) -> None:
    """Missing files, bad TOML and unknown keys are clear ConfigErrors."""
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(config_file=tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(config_file=bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("colour = 'blue'")
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        load_settings(config_file=unknown)


def test_every_setting_is_documented() -> None:
    """docs/configuration.md lists every setting with its environment variable."""
    text = DOCS.read_text()
    docs = Settings.field_docs()
    for name in Settings.__struct_fields__:
        assert f"`--{name.replace('_', '-')}`" in text, name
        assert f"`TICKWIRE_{name.upper()}`" in text, name
        assert docs.get(name), f"{name} has no help text"
