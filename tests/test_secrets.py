"""Secrets stay secret: masked in every message, read from a file instead of the environment,
and the engine's own credentials handed to engines (RUNQ_ENGINE_API_URL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runq.agent.agent import Agent, AgentSettings, InFlight
from runq.broker import Broker, BrokerUnavailable, InvalidInput
from runq.broker.connection import mask_url


@pytest.mark.parametrize(
    "url, masked",
    [
        ("redis://agent:s3cret@host:6380/2", "redis://agent:***@host:6380/2"),
        ("rediss://:s3cret@host", "rediss://:***@host"),
        ("redis://host:6379/0?password=s3cret", "redis://host:6379/0?password=***"),
        (
            "redis://host:6379/0?db=1&password=s3cret&socket_timeout=5",
            "redis://host:6379/0?db=1&password=***&socket_timeout=5",
        ),
        (
            "rediss://agent@host/0?ssl_password=s3cret&ssl_ca_certs=/ca.crt",
            "rediss://agent@host/0?ssl_password=***&ssl_ca_certs=/ca.crt",
        ),
        ("unix:///run/redis.sock?db=0&password=s3cret", "unix:///run/redis.sock?db=0&password=***"),
        (
            "redis+cluster://u:s3cret@h:7000?Password=s3cret",
            "redis+cluster://u:***@h:7000?Password=***",
        ),
        ("redis://u:s3c@ret@host:1/0", "redis://u:***@host:1/0"),
        ("redis://host:6379/0?db=2", "redis://host:6379/0?db=2"),
        ("redis://host:notaport", "redis://host:notaport"),
    ],
)
def test_mask_url_hides_every_password_and_keeps_the_rest(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert "s3cret" not in mask_url(url) and "s3c@ret" not in mask_url(url)


def test_a_query_password_is_masked_in_the_connection_error() -> None:
    with pytest.raises(BrokerUnavailable) as caught:
        Broker.from_url("redis://127.0.0.1:1/0?password=topsecret")
    message = str(caught.value)
    assert message.startswith("Cannot use Redis at redis://127.0.0.1:1/0?password=***: ")
    assert "topsecret" not in message and "\n" not in message


@pytest.fixture
def no_url_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("RUNQ_API_URL", "RUNQ_API_URL_FILE", "RUNQ_REDIS_CLUSTER"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_url_is_read_from_runq_api_url_file(redis_url: str, tmp_path: Path, no_url_env) -> None:
    url_file = tmp_path / "url"
    url_file.write_text(f"  {redis_url}\n")
    no_url_env.setenv("RUNQ_API_URL_FILE", str(url_file))
    broker = Broker.from_env()
    try:
        assert broker.url == redis_url
        assert broker.create_work_queue("from-file").name == "from-file"
    finally:
        broker.close()


def test_runq_api_url_wins_over_the_file(redis_url: str, tmp_path: Path, no_url_env) -> None:
    no_url_env.setenv("RUNQ_API_URL", redis_url)
    no_url_env.setenv("RUNQ_API_URL_FILE", str(tmp_path / "never-read"))
    broker = Broker.from_env()
    assert broker.url == redis_url
    broker.close()


@pytest.mark.parametrize(
    "content, expected",
    [
        (
            None,
            "Cannot read the Redis URL from RUNQ_API_URL_FILE '{path}': No such file or directory.",
        ),
        ("", "RUNQ_API_URL_FILE '{path}' is empty: it must hold the Redis URL."),
        (
            "redis://a:pw@h/0\nredis://b/0",
            "RUNQ_API_URL_FILE '{path}' must hold one line, the Redis URL.",
        ),
        (
            b"\xff\xfe",
            "Cannot read the Redis URL from RUNQ_API_URL_FILE '{path}': it is not UTF-8 text.",
        ),
        ("dir", "Cannot read the Redis URL from RUNQ_API_URL_FILE '{path}': Is a directory."),
    ],
)
def test_an_unusable_url_file_is_one_clear_line(
    tmp_path: Path, no_url_env, content: str | bytes | None, expected: str
) -> None:
    path = tmp_path / "url"
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    no_url_env.setenv("RUNQ_API_URL_FILE", str(path))
    with pytest.raises(InvalidInput) as caught:
        Broker.from_env()
    assert str(caught.value) == expected.format(path=path)
    assert "pw" not in str(caught.value)


# ---- the engine's credentials -----------------------------------------------------------


def engine_env_of(broker: Broker) -> dict[str, str]:
    broker.create_flow_run("q")
    [run] = broker.claim("q", "agent-1")
    return Agent(broker, AgentSettings(work_queues=["q"])).engine_env(
        InFlight(run, "q", run.claim_token)
    )


def test_engines_get_the_agents_url_by_default(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNQ_ENGINE_API_URL", raising=False)
    assert engine_env_of(broker)["RUNQ_API_URL"] == broker.url


def test_engines_get_runq_engine_api_url_when_set(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine_url = "redis://runq-engine:pw@127.0.0.1:6379/0"
    monkeypatch.setenv("RUNQ_ENGINE_API_URL", engine_url)
    assert engine_env_of(broker)["RUNQ_API_URL"] == engine_url


def test_an_agent_on_a_cluster_hands_the_engine_url_on_as_a_cluster_url(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As ``--cluster`` makes the agent's own URL ``redis+cluster://`` (broker.url)."""
    monkeypatch.setenv("RUNQ_ENGINE_API_URL", "redis://runq-engine:pw@node-1:7000")
    on_cluster = Broker(
        broker.client, url="redis+cluster://runq:pw@node-0:7000", settings=broker.settings
    )
    assert engine_env_of(on_cluster)["RUNQ_API_URL"] == "redis+cluster://runq-engine:pw@node-1:7000"
    monkeypatch.setenv("RUNQ_ENGINE_API_URL", "rediss+cluster://runq-engine:pw@node-1:7000")
    assert (
        engine_env_of(on_cluster)["RUNQ_API_URL"] == "rediss+cluster://runq-engine:pw@node-1:7000"
    )
