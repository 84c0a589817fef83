"""The ``keys`` command group: create, list and revoke API keys through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tickwire.access import FileKeyStore
from tickwire.access.cli import keys


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    """Invoke ``keys`` with ``args``, capturing stdout and stderr separately."""
    return CliRunner().invoke(keys, list(args), env=env, catch_exceptions=False)


def store_in(data_dir: Path) -> FileKeyStore:
    """The key store of a data directory."""
    return FileKeyStore(data_dir / "keys.json")


def test_create_prints_the_key_alone_on_the_last_stdout_line(tmp_path: Path) -> None:
    """stdout ends with the key alone; the summary goes to stderr; the key verifies."""
    result = run("create", "--name", "alice", "--data-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    key = result.stdout.splitlines()[-1]
    assert key.startswith("tw_") and key == result.stdout.strip()
    record = store_in(tmp_path).verify(key)
    assert record is not None and record.name == "alice" and record.plan == "basic"
    assert record.id in result.stderr and "shown once" in result.stderr
    assert key not in (tmp_path / "keys.json").read_text()


def test_create_takes_entitlements_and_limits(tmp_path: Path) -> None:
    """--plan, --symbols, --no-rest, --rate, --burst, --monthly-quota, --max-connections apply."""
    result = run(
        "create",
        "--name",
        "feed",
        "--data-dir",
        str(tmp_path),
        "--plan",
        "pro",
        "--symbols",
        "EUR*, gbpusd",
        "--no-rest",
        "--rate",
        "2.5",
        "--burst",
        "7",
        "--monthly-quota",
        "unlimited",
        "--max-connections",
        "3",
    )
    assert result.exit_code == 0, result.output
    record = store_in(tmp_path).verify(result.stdout.splitlines()[-1])
    assert record is not None
    assert record.entitlements.symbols == ("EUR*", "GBPUSD")
    assert not record.entitlements.rest and record.entitlements.stream
    assert (record.limits.rate, record.limits.burst) == (2.5, 7)
    assert record.limits.monthly_quota is None and record.limits.max_connections == 3
    quota = run("create", "--name", "q", "--data-dir", str(tmp_path), "--monthly-quota", "1_000")
    record = store_in(tmp_path).verify(quota.stdout.strip())
    assert record is not None and record.limits.monthly_quota == 1000


def test_data_dir_comes_from_the_environment(tmp_path: Path) -> None:
    """TICKWIRE_DATA_DIR sets the data directory when --data-dir is absent."""
    result = run("create", "--name", "envy", env={"TICKWIRE_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert store_in(tmp_path).verify(result.stdout.strip()) is not None


def test_list_shows_records_but_never_keys(tmp_path: Path) -> None:
    """The table and the JSON list ids, names and plans, and contain no key."""
    key = run("create", "--name", "alice", "--data-dir", str(tmp_path)).stdout.strip()
    run("create", "--name", "bob", "--data-dir", str(tmp_path), "--plan", "pro")
    run("revoke", "bob", "--data-dir", str(tmp_path))
    table = run("list", "--data-dir", str(tmp_path))
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "PLAN", "CREATED", "REVOKED"]
    assert "alice" in lines[1] and lines[1].rstrip().endswith("no")
    assert "bob" in lines[2] and "pro" in lines[2] and not lines[2].rstrip().endswith("no")
    as_json = run("list", "--data-dir", str(tmp_path), "--format", "json")
    records = json.loads(as_json.stdout)
    assert [(r["name"], r["revoked"]) for r in records] == [("alice", False), ("bob", True)]
    for output in (table.stdout, as_json.stdout):
        assert key not in output and key[3:] not in output and "tw_" not in output


def test_list_of_an_empty_directory(tmp_path: Path) -> None:
    """Listing a data directory without keys says so and creates nothing."""
    result = run("list", "--data-dir", str(tmp_path / "none"))
    assert result.exit_code == 0 and result.stdout == ""
    assert "no keys" in result.stderr
    assert not (tmp_path / "none").exists()
    assert json.loads(run("list", "--data-dir", str(tmp_path), "--format", "json").stdout) == []


def test_revoke_by_name_and_by_id(tmp_path: Path) -> None:
    """revoke accepts a name or an id; revoking again is harmless and says so."""
    key = run("create", "--name", "alice", "--data-dir", str(tmp_path)).stdout.strip()
    record = store_in(tmp_path).verify(key)
    assert record is not None
    first = run("revoke", "alice", "--data-dir", str(tmp_path))
    assert first.exit_code == 0 and "revoked key" in first.stderr
    assert store_in(tmp_path).verify(key) is None
    again = run("revoke", record.id, "--data-dir", str(tmp_path))
    assert again.exit_code == 0 and "already revoked" in again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["revoke", "nobody"], "no API key with id or name 'nobody'"),
        (["create", "--name", "bad name!"], "invalid key name"),
        (["create", "--name", "x", "--symbols", "EUR USD"], "invalid symbol pattern"),
    ],
)
def test_errors_are_one_line_and_exit_1(tmp_path: Path, args: list[str], message: str) -> None:
    """Store errors print one line on stderr, no traceback, and exit with code 1."""
    result = run(*args, "--data-dir", str(tmp_path))
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert "Traceback" not in result.output and result.stdout == ""


def test_a_taken_name_and_a_damaged_file_are_clean_errors(tmp_path: Path) -> None:
    """A duplicate active name and an unreadable keys.json are one-line errors."""
    run("create", "--name", "alice", "--data-dir", str(tmp_path))
    taken = run("create", "--name", "alice", "--data-dir", str(tmp_path))
    assert taken.exit_code == 1 and "already exists" in taken.stderr and taken.stdout == ""
    (tmp_path / "keys.json").write_text("{")
    for args in (["list"], ["create", "--name", "bob"], ["revoke", "alice"]):
        result = run(*args, "--data-dir", str(tmp_path))
        assert result.exit_code == 1, args
        assert result.stderr.startswith("tickwire keys: key file") and "damaged" in result.stderr


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    """Invalid option values are usage errors (exit code 2) naming the option."""
    result = run("create", "--name", "x", "--monthly-quota", "lots", "--data-dir", str(tmp_path))
    assert result.exit_code == 2 and "--monthly-quota" in result.stderr
    result = run("create", "--name", "x", "--monthly-quota", "²", "--data-dir", str(tmp_path))
    assert result.exit_code == 2 and "--monthly-quota" in result.stderr  # a digit, not 0-9
    assert run("create", "--data-dir", str(tmp_path)).exit_code == 2  # --name is required
    assert run("create", "--name", "x", "--plan", "gold").exit_code == 2


def test_help_texts_describe_the_commands() -> None:
    """--help names every command, the plans and the data directory's environment variable."""
    top = run("--help").stdout
    assert all(name in top for name in ("create", "list", "revoke"))
    create = run("create", "--help").stdout
    assert "last line" in create and "unlimited" in create and "TICKWIRE_DATA_DIR" in create
    assert "basic:" in create and "pro:" in create
