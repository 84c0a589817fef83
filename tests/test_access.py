"""Access control: hashed key store, entitlements, rate limits and quotas, and the middleware."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

import tickwire.access
from tickwire.access import (
    AccessDenied,
    AccessMiddleware,
    FileKeyStore,
    InvalidKeySpecError,
    KeyNotFoundError,
    KeyStoreError,
    MemoryRateLimiter,
    RedactApiKeys,
    ensure_demo_key,
    entitled,
    tradermade_cost,
    tradermade_error,
)
from tickwire.access.keys import DEMO_KEY_FILE, hash_key

JAN_31_LATE = datetime(2026, 1, 31, 23, 59, 0, tzinfo=UTC).timestamp()
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC).timestamp()


class Clock:
    """A settable clock in epoch seconds."""

    def __init__(self, t: float = 1_767_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def store(tmp_path: Path) -> FileKeyStore:
    """An empty file key store in a temporary data directory."""
    return FileKeyStore(tmp_path / "keys.json")


# -- keys ----------------------------------------------------------------------------------------


def test_public_names_of_the_access_package() -> None:
    """tickwire.access exports exactly its documented names, and each resolves."""
    assert set(tickwire.access.__all__) == {
        "DEFAULT_PUBLIC_PATHS",
        "PLANS",
        "AccessDenied",
        "AccessMiddleware",
        "Decision",
        "Entitlements",
        "ErrorRenderer",
        "FileKeyStore",
        "InvalidKeySpecError",
        "KeyLimits",
        "KeyNotFoundError",
        "KeyRecord",
        "KeyStore",
        "KeyStoreError",
        "MemoryRateLimiter",
        "Plan",
        "RateLimiter",
        "RedactApiKeys",
        "access_middleware",
        "ensure_demo_key",
        "entitled",
        "native_error",
        "tradermade_cost",
        "tradermade_error",
    }
    for name in tickwire.access.__all__:
        assert getattr(tickwire.access, name) is not None


def test_the_file_holds_only_the_hash_of_a_key(store: FileKeyStore) -> None:
    """keys.json contains the key's SHA-256 and id, never the key, and is private (0600)."""
    key, record = store.create("alice")
    text = store.path.read_text()
    assert key.startswith("tw_") and len(key) == 3 + 32
    assert key not in text and key[3:] not in text
    assert hash_key(key) in text and record.id in text
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert not [p for p in store.path.parent.iterdir() if p.name.endswith(".tmp")]


def test_verify_finds_active_keys_only(store: FileKeyStore) -> None:
    """verify returns the record of an active key and None for unknown, empty or huge input."""
    key, record = store.create("alice", plan="pro")
    assert store.verify(key) == record
    assert record.limits.rate == 50.0 and record.plan == "pro"
    assert store.verify(key + "x") is None
    assert store.verify("") is None
    assert store.verify("tw_" + "a" * 1000) is None


def test_revoked_keys_fail_verification_but_stay_listed(store: FileKeyStore) -> None:
    """After revoke (by name or id) verify returns None; lookup and list still show the key."""
    key, record = store.create("alice")
    revoked = store.revoke("alice")
    assert revoked.revoked and revoked.revoked_at is not None and revoked.id == record.id
    assert store.verify(key) is None
    assert store.lookup(key) == revoked
    assert store.list() == [revoked]
    assert store.revoke(record.id) == revoked  # twice is harmless
    with pytest.raises(KeyNotFoundError, match="bob"):
        store.revoke("bob")


def test_names_are_unique_among_active_keys(store: FileKeyStore) -> None:
    """A second active key with the same name is refused; after revoking, the name is free."""
    store.create("alice")
    with pytest.raises(KeyStoreError, match="already exists"):
        store.create("alice")
    store.revoke("alice")
    _, again = store.create("alice")
    assert store.get("alice") == again
    assert len(store.list()) == 2


def test_invalid_key_specs_are_refused(store: FileKeyStore) -> None:
    """Bad names, plans, symbol patterns and limits raise InvalidKeySpecError."""
    for kwargs in (
        {"name": ""},
        {"name": "deadbeef"},  # looks like an id
        {"name": "a" * 65},
        {"name": "x", "plan": "gold"},
        {"name": "x", "symbols": ["EUR USD"]},
        {"name": "x", "symbols": []},
        {"name": "x", "rate": 0.0},
        {"name": "x", "burst": 0},
        {"name": "x", "monthly_quota": 0},
        {"name": "x", "max_connections": -1},
    ):
        with pytest.raises(InvalidKeySpecError):
            store.create(**kwargs)
    assert store.list() == []


def test_limits_come_from_the_plan_unless_overridden(store: FileKeyStore) -> None:
    """Limits default to the plan's; explicit values (and None for the quota) override them."""
    _, basic = store.create("a")
    assert (basic.limits.rate, basic.limits.burst, basic.limits.monthly_quota) == (5, 10, 10_000)
    _, custom = store.create("b", plan="basic", rate=2.5, burst=3, monthly_quota=None)
    assert (custom.limits.rate, custom.limits.burst, custom.limits.monthly_quota) == (2.5, 3, None)
    assert custom.limits.max_connections == 1


def test_entitlement_globs(store: FileKeyStore) -> None:
    """Symbol patterns are case-insensitive fnmatch globs; the default '*' allows everything."""
    _, everything = store.create("all")
    _, some = store.create("some", symbols=["eur*", "GBPUSD", "XA?USD"])
    assert some.entitlements.symbols == ("EUR*", "GBPUSD", "XA?USD")
    assert entitled(everything, "USDJPY")
    assert entitled(some, "EURUSD") and entitled(some, "eurgbp")
    assert entitled(some, "GBPUSD") and not entitled(some, "GBPJPY")
    assert entitled(some, "XAUUSD") and not entitled(some, "XPTEUR")
    assert not entitled(some, "USDEUR")


def test_a_second_instance_sees_changes_after_refresh(store: FileKeyStore) -> None:
    """A store opened on the same file picks up creations and revocations on refresh."""
    other = FileKeyStore(store.path)
    key, _ = store.create("alice")
    assert other.verify(key) is None
    assert other.refresh() is True
    assert other.verify(key) is not None
    assert other.refresh() is False
    store.revoke("alice")
    assert other.refresh() and other.verify(key) is None


def test_writers_in_two_instances_keep_each_others_keys(store: FileKeyStore) -> None:
    """Each write re-reads the file under a lock, so two writers never lose a key."""
    other = FileKeyStore(store.path)
    store.create("a")
    other.create("b")  # other has not refreshed, yet must keep "a"
    store.create("c")
    assert {r.name for r in FileKeyStore(store.path).list()} == {"a", "b", "c"}


def test_a_damaged_key_file_is_an_error(tmp_path: Path) -> None:
    """An undecodable or unknown-version keys.json raises KeyStoreError naming the file."""
    path = tmp_path / "keys.json"
    path.write_text("{not json")
    with pytest.raises(KeyStoreError, match="damaged"):
        FileKeyStore(path)
    path.write_text('{"version": 99, "keys": {}}')
    with pytest.raises(KeyStoreError, match="version 99"):
        FileKeyStore(path)


def test_the_store_is_bounded(tmp_path: Path) -> None:
    """Beyond max_keys (revoked keys included) create raises KeyStoreError."""
    small = FileKeyStore(tmp_path / "keys.json", max_keys=2)
    small.create("a")
    small.create("b")
    small.revoke("a")
    with pytest.raises(KeyStoreError, match="full"):
        small.create("c")


def test_demo_key_is_created_once_and_reused(tmp_path: Path) -> None:
    """ensure_demo_key creates a demo-plan key, keeps it in demo-key.txt (0600), reuses it."""
    key = ensure_demo_key(FileKeyStore(tmp_path / "keys.json"), tmp_path)
    assert key is not None
    path = tmp_path / DEMO_KEY_FILE
    assert path.read_text().strip() == key
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    store = FileKeyStore(tmp_path / "keys.json")  # a later start
    assert ensure_demo_key(store, tmp_path) == key
    record = store.verify(key)
    assert record is not None and record.name == "demo" and record.plan == "demo"
    assert len(store.list()) == 1


def test_a_revoked_demo_key_is_not_recreated(tmp_path: Path) -> None:
    """Once revoked, ensure_demo_key returns None until demo-key.txt is deleted."""
    store = FileKeyStore(tmp_path / "keys.json")
    first = ensure_demo_key(store, tmp_path)
    store.revoke("demo")
    assert ensure_demo_key(store, tmp_path) is None
    (tmp_path / DEMO_KEY_FILE).unlink()
    second = ensure_demo_key(store, tmp_path)
    assert second is not None and second != first and store.verify(second) is not None


def test_a_lost_demo_file_replaces_the_demo_key(tmp_path: Path) -> None:
    """Without demo-key.txt the old active demo key is revoked and a new one created."""
    store = FileKeyStore(tmp_path / "keys.json")
    first = ensure_demo_key(store, tmp_path)
    assert first is not None
    (tmp_path / DEMO_KEY_FILE).unlink()
    second = ensure_demo_key(store, tmp_path)
    assert second is not None and second != first
    assert store.verify(first) is None and store.verify(second) is not None
    (tmp_path / "keys.json").unlink()  # the store was reset: the file's key is unknown
    third = ensure_demo_key(FileKeyStore(tmp_path / "keys.json"), tmp_path)
    assert third not in (None, first, second)


# -- limits --------------------------------------------------------------------------------------


async def test_token_bucket_burst_then_refill() -> None:
    """A full bucket allows `burst` requests at once, then refills at `rate` per second."""
    clock = Clock()
    limiter = MemoryRateLimiter(clock=clock)
    hits = [await limiter.hit("k", rate=2.0, burst=3, monthly_quota=None) for _ in range(4)]
    assert [d.allowed for d in hits] == [True, True, True, False]
    assert [d.remaining for d in hits] == [2, 1, 0, 0]
    refused = hits[-1]
    assert refused.reason == "rate" and refused.retry_after == 1 and refused.limit == 3
    assert refused.reset == int(clock.t) + 2  # 3 tokens at 2/s: full in 1.5 s, rounded up
    clock.t += 0.5  # one token back
    assert (await limiter.hit("k", rate=2.0, burst=3, monthly_quota=None)).allowed
    assert not (await limiter.hit("k", rate=2.0, burst=3, monthly_quota=None)).allowed
    clock.t += 100  # never more than the burst
    results = [await limiter.hit("k", rate=2.0, burst=3, monthly_quota=None) for _ in range(4)]
    assert sum(d.allowed for d in results) == 3


async def test_retry_after_covers_the_missing_tokens() -> None:
    """retry_after is the whole seconds until enough tokens are back, at least 1."""
    clock = Clock()
    limiter = MemoryRateLimiter(clock=clock)
    await limiter.hit("k", rate=0.1, burst=1, monthly_quota=None)
    refused = await limiter.hit("k", rate=0.1, burst=1, monthly_quota=None)
    assert refused.retry_after == 10


async def test_a_clock_stepping_back_never_refills() -> None:
    """If the clock goes backwards, the bucket does not gain tokens."""
    clock = Clock()
    limiter = MemoryRateLimiter(clock=clock)
    await limiter.hit("k", rate=1.0, burst=1, monthly_quota=None)
    clock.t -= 3600
    assert not (await limiter.hit("k", rate=1.0, burst=1, monthly_quota=None)).allowed


async def test_monthly_quota_and_rollover() -> None:
    """The quota refuses with reason 'quota' until the next UTC month, then starts again."""
    clock = Clock(JAN_31_LATE)
    limiter = MemoryRateLimiter(clock=clock)
    decisions = [await limiter.hit("k", rate=100, burst=100, monthly_quota=3) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    refused = decisions[-1]
    assert refused.reason == "quota" and refused.limit == 3
    assert refused.reset == int(FEB_1) and refused.retry_after == 60
    assert limiter.usage("k") == 3
    clock.t = FEB_1 + 1
    allowed = await limiter.hit("k", rate=100, burst=100, monthly_quota=3)
    assert allowed.allowed and allowed.remaining == 2
    assert allowed.reset == int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())


async def test_refused_requests_cost_nothing() -> None:
    """A request refused for rate is not counted against the quota, and vice versa."""
    clock = Clock()
    limiter = MemoryRateLimiter(clock=clock)
    for _ in range(5):
        await limiter.hit("k", rate=1, burst=2, monthly_quota=10)
    assert limiter.usage("k") == 2
    other = MemoryRateLimiter(clock=clock)
    for _ in range(5):
        await other.hit("k", rate=1, burst=5, monthly_quota=1)
    clock.t += 10
    assert (await other.hit("k", rate=1, burst=5, monthly_quota=None)).remaining == 4


async def test_cost_larger_than_the_burst_takes_the_full_bucket() -> None:
    """A cost above the burst empties a full bucket; the quota is charged the full cost."""
    limiter = MemoryRateLimiter(clock=Clock())
    decision = await limiter.hit("k", rate=1, burst=2, monthly_quota=100, cost=5)
    assert decision.allowed and decision.remaining == 95
    assert not (await limiter.hit("k", rate=1, burst=2, monthly_quota=100, cost=5)).allowed


async def test_usage_survives_a_restart(tmp_path: Path) -> None:
    """flush writes this month's counts; a new limiter on the same file starts from them."""
    clock = Clock(JAN_31_LATE)
    path = tmp_path / "usage.json"
    limiter = MemoryRateLimiter(usage_path=path, clock=clock)
    for _ in range(3):
        await limiter.hit("k", rate=100, burst=100, monthly_quota=5)
    await limiter.aclose()
    assert json.loads(path.read_text())["used"] == {"k": 3}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = MemoryRateLimiter(usage_path=path, clock=clock)
    assert again.usage("k") == 3
    assert (await again.hit("k", rate=100, burst=100, monthly_quota=5)).remaining == 1
    clock.t = FEB_1  # a file from last month is ignored
    assert MemoryRateLimiter(usage_path=path, clock=clock).usage("k") == 0


async def test_flush_writes_only_when_something_changed(tmp_path: Path) -> None:
    """flush is a no-op when nothing was counted since the last one."""
    path = tmp_path / "usage.json"
    limiter = MemoryRateLimiter(usage_path=path, clock=Clock())
    await limiter.flush()
    assert not path.exists()
    await limiter.hit("k", rate=1, burst=1, monthly_quota=None)
    await limiter.flush()
    mtime = path.stat().st_mtime_ns
    os.utime(path, ns=(0, 0))
    await limiter.flush()
    assert path.stat().st_mtime_ns == 0 != mtime


def test_a_damaged_usage_file_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An unreadable usage.json is logged and the counts restart (the API stays up)."""
    path = tmp_path / "usage.json"
    path.write_text("garbage")
    with caplog.at_level(logging.ERROR, logger="tickwire.access"):
        limiter = MemoryRateLimiter(usage_path=path)
    assert limiter.usage("k") == 0
    assert "ignoring usage file" in caplog.text


async def test_the_limiter_table_is_bounded() -> None:
    """Beyond max_keys the least recently used key is forgotten (its bucket starts full)."""
    limiter = MemoryRateLimiter(max_keys=2, clock=Clock())
    for key in ("a", "b", "a", "c"):  # "b" is the least recently used when "c" arrives
        await limiter.hit(key, rate=1, burst=1, monthly_quota=None)
    assert limiter.usage("a") == 1 and limiter.usage("c") == 1
    assert limiter.usage("b") == 0
    assert len(limiter._states) == 2


# -- middleware ----------------------------------------------------------------------------------


async def _whoami(request: Request) -> Response:
    record = request.state.key
    return JSONResponse(
        {"id": record.id, "eurusd": entitled(record, "EURUSD")}, headers={"X-Own": "1"}
    )


async def _public(request: Request) -> Response:
    return PlainTextResponse("public")


def _app(store: FileKeyStore, limiter: MemoryRateLimiter, **options: Any) -> AccessMiddleware:
    inner = Starlette(
        routes=[
            Route("/health", _public),
            Route("/docs/{rest:path}", _public),
            Route("/static/{rest:path}", _public),
            Route("/v1/whoami", _whoami),
            Route("/api/v1/live", _whoami),
            Route("/api/v1/tick_historical/{rest:path}", _whoami),
        ]
    )
    return AccessMiddleware(inner, keys=store, limiter=limiter, **options)


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


@pytest.fixture
def limiter() -> MemoryRateLimiter:
    """An in-memory limiter on a fixed clock."""
    return MemoryRateLimiter(clock=Clock())


async def test_the_key_is_accepted_from_all_three_places(
    store: FileKeyStore, limiter: MemoryRateLimiter
) -> None:
    """api_key parameter, Authorization: Bearer and X-API-Key all authenticate."""
    key, record = store.create("alice", symbols=["GBP*"], plan="pro")
    async with _client(_app(store, limiter)) as client:
        answers = [
            await client.get("/v1/whoami", params={"api_key": key}),
            await client.get("/v1/whoami", headers={"Authorization": f"Bearer {key}"}),
            await client.get("/v1/whoami", headers={"X-API-Key": key}),
        ]
    for answer in answers:
        assert answer.status_code == 200
        assert answer.json() == {"id": record.id, "eurusd": False}
        assert answer.headers["x-own"] == "1"
    assert [a.headers["x-ratelimit-remaining"] for a in answers] == [
        "999999",
        "999998",
        "999997",
    ]
    assert answers[0].headers["x-ratelimit-limit"] == "1000000"
    assert int(answers[0].headers["x-ratelimit-reset"]) > 1_767_000_000


async def test_bad_keys_get_one_and_the_same_401(
    store: FileKeyStore, limiter: MemoryRateLimiter
) -> None:
    """Missing, unknown and revoked keys get identical 401s that echo nothing of the key."""
    key, _ = store.create("alice")
    revoked, _ = store.create("bob")
    store.revoke("bob")
    async with _client(_app(store, limiter)) as client:
        answers = [
            await client.get("/v1/whoami"),
            await client.get("/v1/whoami", params={"api_key": key[:-1]}),
            await client.get("/v1/whoami", headers={"Authorization": f"Bearer {revoked}"}),
            await client.get("/v1/whoami", headers={"Authorization": f"Basic {key}"}),
        ]
    for answer in answers:
        assert answer.status_code == 401
        assert answer.content == answers[0].content
        assert answer.json()["error"]["code"] == "unauthorized"
        assert answer.json()["error"]["param"] == "api_key"
        assert answer.headers["www-authenticate"] == 'Bearer realm="tickwire"'
        assert "x-ratelimit-limit" not in answer.headers
        assert "tw_" not in answer.text
    assert list(answers[0].json()) == ["error"]
    assert list(answers[0].json()["error"]) == ["code", "message", "param"]


async def test_a_key_without_rest_gets_403_with_rate_headers(
    store: FileKeyStore, limiter: MemoryRateLimiter
) -> None:
    """A stream-only key is counted and refused with 403 'forbidden'."""
    key, _ = store.create("streamer", rest=False)
    async with _client(_app(store, limiter)) as client:
        answer = await client.get("/v1/whoami", params={"api_key": key})
    assert answer.status_code == 403
    assert answer.json() == {
        "error": {
            "code": "forbidden",
            "message": "This API key is not entitled to the REST API.",
            "param": None,
        }
    }
    assert answer.headers["x-ratelimit-remaining"] == "9999"


async def test_over_the_rate_gets_429_with_retry_after(
    store: FileKeyStore, limiter: MemoryRateLimiter
) -> None:
    """Past the burst the answer is 429 'rate_limited' with Retry-After and X-RateLimit-*."""
    key, _ = store.create("alice", rate=0.5, burst=2, monthly_quota=None)
    async with _client(_app(store, limiter)) as client:
        answers = [await client.get("/v1/whoami", params={"api_key": key}) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    refused = answers[-1]
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.json()["error"]["param"] is None
    assert refused.headers["retry-after"] == "2"
    assert refused.headers["x-ratelimit-limit"] == "2"
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert "x-ratelimit-reset" in refused.headers


async def test_over_the_quota_gets_429_quota_exceeded(
    store: FileKeyStore, limiter: MemoryRateLimiter
) -> None:
    """When the month's quota is used up the answer is 429 'quota_exceeded'."""
    key, _ = store.create("alice", monthly_quota=1)
    async with _client(_app(store, limiter)) as client:
        ok = await client.get("/v1/whoami", params={"api_key": key})
        refused = await client.get("/v1/whoami", params={"api_key": key})
    assert ok.status_code == 200 and ok.headers["x-ratelimit-remaining"] == "0"
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "quota_exceeded"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-reset"] == ok.headers["x-ratelimit-reset"]


async def test_public_paths_need_no_key(store: FileKeyStore, limiter: MemoryRateLimiter) -> None:
    """Health, docs and static files are served without a key; dot segments are not public."""
    async with _client(_app(store, limiter)) as client:
        for path in ("/health", "/docs/index.html", "/static/app.js"):
            answer = await client.get(path)
            assert answer.status_code == 200, path
            assert "x-ratelimit-limit" not in answer.headers
        sneaky = await client.get("/static/%2E%2E/v1/whoami")
        assert sneaky.status_code == 401
        assert (await client.get("/healthz")).status_code == 401


async def test_public_paths_are_configurable(
    store: FileKeyStore, limiter: MemoryRateLimiter
) -> None:
    """public_paths replaces the default list."""
    app = _app(store, limiter, public_paths=["/v1/*"])
    async with _client(app) as client:
        assert (await client.get("/health")).status_code == 401
    assert app.is_public("/v1/anything") and not app.is_public("/v1")


async def test_tradermade_paths_render_tradermade_errors(
    store: FileKeyStore, limiter: MemoryRateLimiter
) -> None:
    """Under /api/v1/ a bad key gets {"error": 401, "message": "API Key is invalid"}."""
    key, _ = store.create("alice", rate=1, burst=1)
    app = _app(store, limiter, error_renderers=[("/api/v1/", tradermade_error)])
    async with _client(app) as client:
        unauthorized = await client.get("/api/v1/live", params={"api_key": "nope"})
        native = await client.get("/v1/whoami", params={"api_key": "nope"})
        await client.get("/api/v1/live", params={"api_key": key})
        limited = await client.get("/api/v1/live", params={"api_key": key})
    assert unauthorized.status_code == 401
    assert unauthorized.content == b'{"error":401,"message":"API Key is invalid"}'
    assert unauthorized.headers["content-type"] == "application/json"
    assert native.json()["error"]["code"] == "unauthorized"
    assert limited.status_code == 429
    body = limited.json()
    assert list(body) == ["error", "message"] and body["error"] == 429
    assert body["message"].startswith("Too many requests")
    assert limited.headers["retry-after"] == "1"


def test_tradermade_renderer_shapes() -> None:
    """The TraderMade renderer repeats the status in 'error' and uses TraderMade's wording."""
    status, headers, body = tradermade_error(403, "forbidden", "ignored")
    assert status == 403 and headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "error": 403,
        "message": "Your plan doesn't allow access to this dataset",
    }
    assert json.loads(tradermade_error(429, "quota_exceeded", "x")[2])["error"] == 429


async def test_calls_can_cost_more_than_one(
    store: FileKeyStore, limiter: MemoryRateLimiter
) -> None:
    """With tradermade_cost, a tick_historical call counts 5 requests against the quota."""
    key, _ = store.create("alice", plan="pro")
    async with _client(_app(store, limiter, cost=tradermade_cost)) as client:
        live = await client.get("/api/v1/live", params={"api_key": key})
        ticks = await client.get("/api/v1/tick_historical/EURUSD/a/b", params={"api_key": key})
    assert int(live.headers["x-ratelimit-remaining"]) - 5 == int(
        ticks.headers["x-ratelimit-remaining"]
    )


async def _websocket_state(app_factory: Callable[[Any], AccessMiddleware], query: bytes) -> Any:
    seen: dict[str, Any] = {}

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope["state"])

    async def nothing() -> Any:  # pragma: no cover - never called
        return {}

    async def discard(message: Any) -> None:  # pragma: no cover - never called
        raise AssertionError(message)

    scope = {"type": "websocket", "path": "/stream", "headers": [], "query_string": query}
    await app_factory(inner)(scope, nothing, discard)
    return seen


async def test_websocket_scopes_are_annotated_not_answered(
    store: FileKeyStore, limiter: MemoryRateLimiter
) -> None:
    """A websocket gets state['key'] when allowed, state['access_error'] otherwise; no answer."""
    key, record = store.create("alice")
    rest_only, _ = store.create("rester", stream=False)

    def factory(inner: Any) -> AccessMiddleware:
        return AccessMiddleware(inner, keys=store, limiter=limiter)

    allowed = await _websocket_state(factory, b"api_key=" + key.encode())
    assert allowed == {"key": record}
    missing = await _websocket_state(factory, b"")
    assert missing["access_error"] == AccessDenied(
        status=401, code="unauthorized", message=missing["access_error"].message
    )
    assert "key" not in missing
    forbidden = await _websocket_state(factory, b"api_key=" + rest_only.encode())
    assert forbidden["access_error"].status == 403 and "key" not in forbidden


async def test_lifespan_runs_maintenance_and_saves_usage(tmp_path: Path) -> None:
    """While the app runs, keys made elsewhere are picked up; shutdown flushes usage counts."""
    store = FileKeyStore(tmp_path / "keys.json")
    limiter = MemoryRateLimiter(usage_path=tmp_path / "usage.json")
    app = _app(store, limiter, maintenance_interval=0.01)
    key, _ = store.create("alice")
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def send(message: Any) -> None:
        await outbox.put(message)

    lifespan = asyncio.create_task(app({"type": "lifespan", "state": {}}, inbox.get, send))
    await inbox.put({"type": "lifespan.startup"})
    assert (await asyncio.wait_for(outbox.get(), 5))["type"] == "lifespan.startup.complete"
    async with _client(app) as client:
        assert (await client.get("/v1/whoami", params={"api_key": key})).status_code == 200
        late, _ = FileKeyStore(tmp_path / "keys.json").create("bob")  # another process
        for _ in range(500):
            if store.verify(late) is not None:
                break
            await asyncio.sleep(0.01)
        assert (await client.get("/v1/whoami", params={"api_key": late})).status_code == 200
    await inbox.put({"type": "lifespan.shutdown"})
    assert (await asyncio.wait_for(outbox.get(), 5))["type"] == "lifespan.shutdown.complete"
    await lifespan
    saved = json.loads((tmp_path / "usage.json").read_text())["used"]
    assert sorted(saved.values()) == [1, 1]


def test_access_logs_can_hide_api_keys() -> None:
    """RedactApiKeys replaces api_key values in log arguments and messages."""
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4", "GET", "/api/v1/live?currency=EURUSD&api_key=tw_secret", "1.1", 200),
        None,
    )
    assert RedactApiKeys().filter(record)
    assert "tw_secret" not in record.getMessage()
    assert "api_key=***" in record.getMessage() and "currency=EURUSD" in record.getMessage()
