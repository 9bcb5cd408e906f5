"""Connecting by URL: clear one-line errors, masked passwords, the eviction warning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import redis

from runq.broker import Broker, BrokerUnavailable, InvalidInput
from runq.broker.connection import mask_url
from tests.figures import Figure
from tests.redis_server import RedisServer


def test_mask_url_hides_only_the_password() -> None:
    assert mask_url("redis://agent:s3cret@host:6380/2") == "redis://agent:***@host:6380/2"
    assert mask_url("rediss://:pw@host") == "rediss://:***@host"
    assert mask_url("redis://host:6379/0") == "redis://host:6379/0"


def test_unreachable_redis_names_the_url_without_the_password() -> None:
    with pytest.raises(BrokerUnavailable) as caught:
        Broker.from_url("redis://user:topsecret@127.0.0.1:1/0")
    message = str(caught.value)
    assert message.startswith("Cannot use Redis at redis://user:***@127.0.0.1:1/0: ")
    assert "topsecret" not in message and "\n" not in message


def test_missing_unix_socket() -> None:
    with pytest.raises(BrokerUnavailable, match="unix:///nonexistent/redis.sock"):
        Broker.from_url("unix:///nonexistent/redis.sock")


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:6379",
        "localhost:6379",
        "redis://host:notaport",
        "redis://127.0.0.1:1/0?bogus=1",
    ],
)
def test_malformed_urls(url: str) -> None:
    with pytest.raises((InvalidInput, BrokerUnavailable)) as caught:
        Broker.from_url(url)
    assert "\n" not in str(caught.value)


@pytest.fixture
def acl_server(redis_server: RedisServer, tmp_path: Path):
    """A server of the same version with a password and an ACL user."""
    server = RedisServer(
        redis_server.binary, tmp_path / "acl", extra_args=("--requirepass", "adminpw")
    )
    server.start(ping_password="adminpw")
    admin = redis.Redis(port=server.port, password="adminpw")
    admin.execute_command("ACL", "SETUSER", "agent", "on", ">agentpw", "~*", "&*", "+@all")
    admin.close()
    yield server
    server.stop()


def test_acl_user_and_wrong_password(acl_server: RedisServer) -> None:
    url = f"redis://agent:agentpw@127.0.0.1:{acl_server.port}/0"
    broker = Broker.from_url(url)
    assert broker.create_work_queue("q").name == "q"
    broker.close()
    with pytest.raises(BrokerUnavailable, match="authentication failed") as caught:
        Broker.from_url(f"redis://agent:badpw@127.0.0.1:{acl_server.port}/0")
    assert "badpw" not in str(caught.value) and "agent:***@" in str(caught.value)
    with pytest.raises(BrokerUnavailable, match="authentication"):
        Broker.from_url(f"redis://127.0.0.1:{acl_server.port}/0")


def test_warns_when_redis_may_evict(redis_url: str, caplog, figure: Figure) -> None:
    client = redis.Redis.from_url(redis_url)
    client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with caplog.at_level(logging.WARNING, logger="runq.broker"):
            Broker.from_url(redis_url).close()
        figure(
            "eviction_warnings",
            sum("maxmemory-policy" in record.getMessage() for record in caplog.records),
        )
        assert "maxmemory-policy allkeys-lru" in caplog.text
    finally:
        client.config_set("maxmemory-policy", "noeviction")
        client.close()


def test_a_lost_connection_mid_session_is_one_clear_error(
    redis_server: RedisServer, redis_url: str
) -> None:
    broker = Broker.from_url(redis_url)
    broker.create_work_queue("q")
    redis_server.kill()
    try:
        with pytest.raises(BrokerUnavailable, match=f"Cannot use Redis at {redis_url}"):
            broker.read_work_queue("q")
    finally:
        redis_server.start()
