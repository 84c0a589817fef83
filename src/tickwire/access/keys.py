"""API keys: random secrets stored only as hashes, with per-key entitlements and limits.

A key is ``tw_`` followed by ``secrets.token_urlsafe(24)`` (192 random bits). The store keeps
the SHA-256 of the key, never the key itself; the plaintext is shown once, when it is created.

Why a plain, unsalted SHA-256 is enough: salts and slow hashes (bcrypt, scrypt, Argon2) protect
*low-entropy* secrets such as passwords against guessing. Our keys are 192-bit random strings,
so guessing a key from its hash is as hard as guessing the key, and a fast hash lets every
request be verified with one ``dict`` lookup. A key's id is random too, unrelated to the key,
so listing keys reveals nothing about them.

Guarantees of every :class:`KeyStore`:

- :meth:`KeyStore.verify` runs in memory, in O(1), does no I/O and never logs the key. Its
  timing depends on the key's hash, which a caller cannot steer, not on how much of a guessed
  key is right.
- Names are unique among active keys; ids are unique among all keys; revoked keys stay listed.
- At most ``max_keys`` keys (active or revoked) exist, so every table stays bounded.

:class:`FileKeyStore` keeps everything in one JSON file (``<data_dir>/keys.json``, mode 0600)
written atomically (temporary file, fsync, rename, fsync of the directory). Changes made by
another process (the ``tickwire keys`` CLI while the server runs) become visible when
:meth:`~KeyStore.refresh` is called; :class:`~tickwire.access.AccessMiddleware` calls it every
couple of seconds. A database-backed store (PostgreSQL, Redis) implements the same interface and
keeps an in-memory index for ``verify``, refreshed the same way.
"""

from __future__ import annotations

import abc
import builtins
import contextlib
import enum
import fcntl
import fnmatch
import functools
import hashlib
import logging
import os
import re
import secrets
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import msgspec

from ..errors import TickwireError

__all__ = [
    "DEMO_KEY_FILE",
    "DEMO_KEY_NAME",
    "FROM_PLAN",
    "KEYS_FILE",
    "KEY_PREFIX",
    "MAX_KEYS",
    "PLANS",
    "Entitlements",
    "FileKeyStore",
    "InvalidKeySpecError",
    "KeyLimits",
    "KeyNotFoundError",
    "KeyRecord",
    "KeyStore",
    "KeyStoreError",
    "Plan",
    "ensure_demo_key",
    "entitled",
    "hash_key",
    "write_atomic",
]

log = logging.getLogger("tickwire.access")

KEY_PREFIX = "tw_"
"""Every key starts with this, so a leaked key is easy to recognise (and to scan for)."""
KEYS_FILE = "keys.json"
"""Name of :class:`FileKeyStore`'s file inside the data directory."""
DEMO_KEY_NAME = "demo"
DEMO_KEY_FILE = "demo-key.txt"
MAX_KEYS = 100_000
"""Default cap on keys (active and revoked) in one store."""
MAX_KEY_LENGTH = 256
"""Longer strings are rejected by :meth:`KeyStore.verify` before hashing."""
MAX_SYMBOL_PATTERNS = 200
_ID_RE = re.compile(r"[0-9a-f]{8}")
_NAME_RE = re.compile(r"[\w.@+-][\w .@+-]{0,63}")
_PATTERN_RE = re.compile(r"[A-Z0-9*?\[\]!._/-]{1,32}")


class KeyStoreError(TickwireError):
    """The key store cannot do what was asked (file unreadable, store full, name taken ...)."""


class KeyNotFoundError(KeyStoreError, LookupError):
    """No key has this id, and no key has this name."""

    def __init__(self, id_or_name: str) -> None:
        super().__init__(f"no API key with id or name {id_or_name!r}")
        self.id_or_name = id_or_name

    def __str__(self) -> str:  # LookupError-style quoting would wrap the whole message
        return str(self.args[0])


class InvalidKeySpecError(KeyStoreError, ValueError):
    """A name, plan, symbol pattern or limit given for a new key is invalid."""


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """Named default limits for new keys. The plan's name is kept on the key as a label."""

    name: str
    rate: float
    """Sustained requests per second (token bucket refill rate)."""
    burst: int
    """Requests that may be made at once after a quiet period (token bucket size)."""
    monthly_quota: int | None
    """Requests per calendar month (UTC); None is unlimited."""
    max_connections: int
    """Concurrent stream connections."""
    description: str = ""


PLANS: Mapping[str, Plan] = MappingProxyType(
    {
        p.name: p
        for p in (
            Plan(
                name="demo",
                rate=10.0,
                burst=20,
                monthly_quota=100_000,
                max_connections=2,
                description="the local demo key created on first start",
            ),
            Plan(
                name="basic",
                rate=5.0,
                burst=10,
                monthly_quota=10_000,
                max_connections=1,
                description="a small client",
            ),
            Plan(
                name="pro",
                rate=50.0,
                burst=100,
                monthly_quota=1_000_000,
                max_connections=10,
                description="a production client",
            ),
            Plan(
                name="unlimited",
                rate=1_000.0,
                burst=2_000,
                monthly_quota=None,
                max_connections=100,
                description="no monthly quota; the rate is still capped to protect the server",
            ),
        )
    }
)
"""The plans, by name. A key may override any of a plan's limits."""


class Entitlements(msgspec.Struct, frozen=True, kw_only=True):
    """What a key may use."""

    symbols: tuple[str, ...] = ("*",)
    """Symbol patterns (fnmatch globs, upper case): ``"*"``, ``"EUR*"``, ``"GBPUSD"``."""
    rest: bool = True
    """May call the REST API."""
    stream: bool = True
    """May open stream connections."""


class KeyLimits(msgspec.Struct, frozen=True, kw_only=True):
    """How much a key may use; see :class:`Plan` for the meaning of each field."""

    rate: float
    burst: int
    monthly_quota: int | None
    max_connections: int


class KeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One key, without its secret: what endpoints see as ``request.state.key``."""

    id: str
    """Random 8 hex digits, unrelated to the key: safe to show and to log."""
    name: str
    plan: str
    created: datetime
    revoked: bool = False
    revoked_at: datetime | None = None
    entitlements: Entitlements
    limits: KeyLimits


class _KeysFile(msgspec.Struct, kw_only=True):
    version: int
    keys: dict[str, KeyRecord]
    """By SHA-256 (hex) of the key."""


_FILE_VERSION = 1
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_KeysFile)


class _FromPlan(enum.Enum):
    FROM_PLAN = "from plan"


FROM_PLAN = _FromPlan.FROM_PLAN
"""Default of a limit argument of :meth:`KeyStore.create`: take the value from the plan."""
_Default = Literal[_FromPlan.FROM_PLAN]


def hash_key(key: str) -> str:
    """The stored form of a key: hex SHA-256 of its UTF-8 bytes (see the module docstring)."""
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def entitled(record: KeyRecord, symbol: str) -> bool:
    """True if ``record`` may use ``symbol`` (case-insensitive match against its patterns)."""
    patterns = record.entitlements.symbols
    if patterns == ("*",):
        return True
    return _compile(patterns).fullmatch(symbol.upper()) is not None


@functools.lru_cache(maxsize=1024)
def _compile(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def _normalise_symbols(symbols: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for raw in symbols:
        pattern = raw.strip().upper()
        if not _PATTERN_RE.fullmatch(pattern):
            raise InvalidKeySpecError(
                f"invalid symbol pattern {raw!r}: use letters, digits and the globs * ? [...]"
            )
        if pattern not in out:
            out.append(pattern)
    if not out:
        raise InvalidKeySpecError("a key needs at least one symbol pattern (use '*' for all)")
    if len(out) > MAX_SYMBOL_PATTERNS:
        raise InvalidKeySpecError(f"at most {MAX_SYMBOL_PATTERNS} symbol patterns per key")
    return tuple(out)


def _limits(
    plan: Plan,
    rate: float | _Default,
    burst: int | _Default,
    monthly_quota: int | _Default | None,
    max_connections: int | _Default,
) -> KeyLimits:
    limits = KeyLimits(
        rate=plan.rate if rate is FROM_PLAN else float(rate),
        burst=plan.burst if burst is FROM_PLAN else burst,
        monthly_quota=plan.monthly_quota if monthly_quota is FROM_PLAN else monthly_quota,
        max_connections=plan.max_connections if max_connections is FROM_PLAN else max_connections,
    )
    if not 0 < limits.rate <= 1_000_000:
        raise InvalidKeySpecError(f"rate must be in (0, 1000000] requests/s, not {limits.rate}")
    if not 1 <= limits.burst <= 1_000_000:
        raise InvalidKeySpecError(f"burst must be in [1, 1000000], not {limits.burst}")
    if limits.monthly_quota is not None and not 1 <= limits.monthly_quota <= 10**12:
        raise InvalidKeySpecError(f"monthly quota must be ≥ 1 or unlimited, not {monthly_quota}")
    if not 0 <= limits.max_connections <= 100_000:
        raise InvalidKeySpecError(
            f"max connections must be in [0, 100000], not {limits.max_connections}"
        )
    return limits


class KeyStore(abc.ABC):
    """Where keys live. Subclasses implement storage; validation and key generation live here.

    Implementations must make :meth:`lookup` an in-memory O(1) lookup by hash, and make
    :meth:`_add` and :meth:`_revoke` atomic with respect to other writers.
    """

    @abc.abstractmethod
    def lookup(self, key: str) -> KeyRecord | None:
        """The record of ``key`` even if revoked, or None. In memory; never logs the key."""

    @abc.abstractmethod
    def list(self) -> builtins.list[KeyRecord]:
        """Every key, revoked ones included, oldest first."""

    @abc.abstractmethod
    def _add(self, key_hash: str, record: KeyRecord) -> None:
        """Store a new key; raise :class:`KeyStoreError` if its id or active name is taken."""

    @abc.abstractmethod
    def _revoke(self, key_id: str, when: datetime) -> KeyRecord:
        """Mark the key revoked (idempotent) and return its record."""

    def refresh(self) -> bool:
        """Pick up changes made by other processes; True if anything changed. May do I/O."""
        return False

    def verify(self, key: str) -> KeyRecord | None:
        """The record of an active key, or None for a missing, unknown or revoked one."""
        if not key or len(key) > MAX_KEY_LENGTH:
            return None
        record = self.lookup(key)
        if record is None or record.revoked:
            return None
        return record

    def create(
        self,
        name: str,
        *,
        plan: str = "basic",
        symbols: Iterable[str] = ("*",),
        rest: bool = True,
        stream: bool = True,
        rate: float | _Default = FROM_PLAN,
        burst: int | _Default = FROM_PLAN,
        monthly_quota: int | _Default | None = FROM_PLAN,
        max_connections: int | _Default = FROM_PLAN,
    ) -> tuple[str, KeyRecord]:
        """Create a key; return ``(plaintext, record)``. The plaintext is not kept anywhere.

        Limits left at :data:`FROM_PLAN` come from the plan; ``monthly_quota=None`` means
        unlimited. Raises :class:`InvalidKeySpecError` for bad arguments and
        :class:`KeyStoreError` if the name is taken by an active key or the store is full.
        """
        if not _NAME_RE.fullmatch(name) or _ID_RE.fullmatch(name):
            raise InvalidKeySpecError(
                f"invalid key name {name!r}: 1-64 letters, digits, spaces or . @ + - _, "
                "and not 8 hex digits (that is what key ids look like)"
            )
        try:
            chosen = PLANS[plan]
        except KeyError:
            raise InvalidKeySpecError(f"unknown plan {plan!r}; plans: {', '.join(PLANS)}") from None
        if isinstance(symbols, str):
            symbols = symbols.split(",")
        record = KeyRecord(
            id=secrets.token_hex(4),
            name=name,
            plan=plan,
            created=datetime.now(UTC).replace(microsecond=0),
            entitlements=Entitlements(
                symbols=_normalise_symbols(symbols), rest=rest, stream=stream
            ),
            limits=_limits(chosen, rate, burst, monthly_quota, max_connections),
        )
        key = KEY_PREFIX + secrets.token_urlsafe(24)
        self._add(hash_key(key), record)
        return key, record

    def get(self, id_or_name: str) -> KeyRecord:
        """The key with this id, else the active key with this name, else the latest revoked one.

        Raises :class:`KeyNotFoundError`.
        """
        records = self.list()
        for record in records:
            if record.id == id_or_name:
                return record
        named = [r for r in records if r.name == id_or_name]
        active = [r for r in named if not r.revoked]
        if active:
            return active[0]
        if named:
            return named[-1]
        raise KeyNotFoundError(id_or_name)

    def revoke(self, id_or_name: str) -> KeyRecord:
        """Revoke a key by id or name (see :meth:`get`); revoking twice is harmless."""
        record = self.get(id_or_name)
        if record.revoked:
            return record
        return self._revoke(record.id, datetime.now(UTC).replace(microsecond=0))


class FileKeyStore(KeyStore):
    """Keys in one JSON file, mapped by key hash; see the module docstring.

    Reads are lock-free (the table is swapped whole); writers serialise on a thread lock and,
    across processes, on ``flock`` of ``<path>.lock``, and re-read the file before changing it,
    so the CLI and a running server never lose each other's changes.
    """

    def __init__(self, path: Path | str, *, max_keys: int = MAX_KEYS) -> None:
        """Open the store at ``path`` (usually ``<data_dir>/keys.json``); a missing file is empty.

        Raises :class:`KeyStoreError` if the file exists but cannot be read or decoded.
        """
        self.path = Path(path)
        self.max_keys = max_keys
        self._by_hash: dict[str, KeyRecord] = {}
        self._signature: tuple[int, int, int] | None = None
        self._lock = threading.RLock()
        self._reload()

    def __repr__(self) -> str:
        return f"FileKeyStore({str(self.path)!r})"

    def lookup(self, key: str) -> KeyRecord | None:
        return self._by_hash.get(hash_key(key))

    def list(self) -> builtins.list[KeyRecord]:
        return sorted(self._by_hash.values(), key=lambda r: r.created)

    def refresh(self) -> bool:
        """Reload the file if it changed on disk (by inode, size and mtime).

        Raises :class:`KeyStoreError` if the new file is unreadable; the keys loaded before
        stay in force.
        """
        if self._stat() == self._signature:
            return False
        with self._lock:
            return self._reload()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise KeyStoreError(f"cannot read key file {self.path}: {exc.strerror}") from exc
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _reload(self) -> bool:
        signature = self._stat()
        if signature is None:
            changed = bool(self._by_hash)
            self._by_hash, self._signature = {}, None
            return changed
        try:
            data = self.path.read_bytes()
            decoded = _decoder.decode(data)
        except OSError as exc:
            raise KeyStoreError(f"cannot read key file {self.path}: {exc.strerror}") from exc
        except msgspec.DecodeError as exc:
            raise KeyStoreError(f"key file {self.path} is damaged: {exc}") from exc
        if decoded.version != _FILE_VERSION:
            raise KeyStoreError(
                f"key file {self.path} has version {decoded.version}; "
                f"this tickwire reads version {_FILE_VERSION}"
            )
        self._by_hash, self._signature = decoded.keys, signature
        return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the thread lock and the inter-process file lock, with a fresh view of the file."""
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(
                    self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600
                )
            except OSError as exc:
                raise KeyStoreError(f"cannot lock key file {self.path}: {exc.strerror}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._reload()
                yield
            finally:
                os.close(fd)  # releases the flock

    def _write(self, table: dict[str, KeyRecord]) -> None:
        data = msgspec.json.format(_encoder.encode(_KeysFile(version=_FILE_VERSION, keys=table)))
        try:
            write_atomic(self.path, data + b"\n")
        except OSError as exc:
            raise KeyStoreError(f"cannot write key file {self.path}: {exc.strerror}") from exc
        self._by_hash, self._signature = table, self._stat()

    def _add(self, key_hash: str, record: KeyRecord) -> None:
        with self._locked():
            table = self._by_hash
            if len(table) >= self.max_keys:
                raise KeyStoreError(f"the key store is full ({self.max_keys} keys)")
            if key_hash in table or any(r.id == record.id for r in table.values()):
                raise KeyStoreError("key collision; please try again")  # 2^-32 odds per key
            if any(r.name == record.name and not r.revoked for r in table.values()):
                raise KeyStoreError(f"an active key named {record.name!r} already exists")
            self._write({**table, key_hash: record})

    def _revoke(self, key_id: str, when: datetime) -> KeyRecord:
        with self._locked():
            for key_hash, record in self._by_hash.items():
                if record.id == key_id:
                    if record.revoked:
                        return record
                    revoked = msgspec.structs.replace(record, revoked=True, revoked_at=when)
                    self._write({**self._by_hash, key_hash: revoked})
                    return revoked
        raise KeyNotFoundError(key_id)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data``: readers see the old or the new file, never a mix.

    Writes a temporary file in the same directory, fsyncs it, renames it over ``path`` and
    fsyncs the directory, so the new content also survives a power loss once this returns.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def ensure_demo_key(store: KeyStore, data_dir: Path) -> str | None:
    """The demo key's plaintext, creating the key (plan ``demo``) on first start.

    The plaintext is kept in ``<data_dir>/demo-key.txt`` (mode 0600). That file is a deliberate
    exception to "keys are stored only hashed": it lets ``make run`` print a working link on
    every start of a local server. Do not rely on it in production; revoke the demo key there.

    The file is the switch:

    - file present, key active: return it;
    - file present, key revoked: return None (a revoked demo key is never silently replaced);
    - file absent, or its key unknown to the store (the store was reset): create a new demo
      key, revoking any active key named ``demo`` first (its plaintext is lost anyway).

    So to get a fresh demo key after revoking it, delete the file and restart.

    Raises :class:`KeyStoreError` (or ``OSError`` for the demo file) if storage fails.
    """
    path = Path(data_dir) / DEMO_KEY_FILE
    try:
        key: str | None = path.read_text().strip()
    except FileNotFoundError:
        key = None
    if key:
        found = store.lookup(key)
        if found is not None:
            return None if found.revoked else key
    with contextlib.suppress(KeyNotFoundError):
        old = store.get(DEMO_KEY_NAME)
        if not old.revoked:
            store.revoke(old.id)
            log.info("revoked demo key %s: %s did not hold its plaintext", old.id, path)
    key, record = store.create(DEMO_KEY_NAME, plan="demo")
    write_atomic(path, (key + "\n").encode())
    log.info("created demo key %s; its plaintext is in %s", record.id, path)
    return key
