"""What every typed script wrapper stands on: the registered scripts of one Redis client
and the one call path that builds KEYS and ARGV from a script's declaration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.commands.core import Script

from ..errors import translate_script_error
from . import specs
from .sources import Composed, compose, locate
from .specs import ScriptSpec

QUEUE_SCRIPTS = tuple(specs.QUEUE_SPECS)
GLOBAL_SCRIPTS = tuple(specs.GLOBAL_SPECS)
RUN_FIELDS = len(specs.RUN_CREATE.argv_rest)  # fields per run in run_create.lua's ARGV


def source(name: str, shebang: bool = True, sharded: bool = False, cluster: bool = False) -> str:
    """The text sent to Redis for script ``name``, its helpers included (see
    :func:`.sources.compose` for the flags)."""
    return compose(name, shebang, sharded, cluster).text


def located(error: redis.ResponseError, composed: Composed | None = None) -> redis.ResponseError:
    """``error`` with its ``user_script:N`` turned into the file and line it came from
    (the exception's type is kept: out-of-memory stays out-of-memory)."""
    text = locate(str(error), composed)
    return error if text == str(error) else type(error)(text)


def server_major_version(client: Any) -> int:
    """The major version of the Redis behind ``client`` (one node's, on a cluster)."""
    info = client.info("server")
    if "redis_version" not in info:  # a cluster client may answer per node
        info = next(iter(info.values()))
    return int(str(info["redis_version"]).split(".")[0])


def uses_sharded_wakeups(client: Any) -> bool:
    """True when wake-ups travel by sharded pub/sub: a Redis Cluster of Redis 7 or newer
    (the agent then SSUBSCRIBEs; plain pub/sub elsewhere)."""
    from redis.cluster import RedisCluster

    return isinstance(client, RedisCluster) and server_major_version(client) >= 7


class ScriptsBase:
    """The registered scripts of one Redis client, registered when first used (the
    server's version decides whether the flags line is sent)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._registered: dict[str, Script] | None = None
        self._composed: dict[str, Composed] = {}

    @property
    def _scripts(self) -> dict[str, Script]:
        if self._registered is None:
            from redis.cluster import RedisCluster

            shebang = server_major_version(self._client) >= 7
            sharded = uses_sharded_wakeups(self._client)
            cluster = isinstance(self._client, RedisCluster)
            self._composed = {
                name: compose(name, shebang, sharded, cluster)
                for name in QUEUE_SCRIPTS + GLOBAL_SCRIPTS
            }
            self._registered = {
                name: self._client.register_script(composed.text)
                for name, composed in self._composed.items()
            }
        return self._registered

    def load_all(self, *, only_missing: bool = False) -> None:
        """SCRIPT LOAD every script now (agents do, at start): a client whose ACL allows
        EVALSHA but not SCRIPT LOAD (the engine user) can then run them. On a cluster
        both commands go to every primary."""
        scripts = list(self._scripts.items())
        if only_missing:
            found = self._client.script_exists(*(script.sha for _, script in scripts))
            if isinstance(found, dict):  # a cluster client answers per node
                found = [all(flags) for flags in zip(*found.values())]
            scripts = [item for item, exists in zip(scripts, found) if not exists]
        for name, script in scripts:
            try:
                self._client.script_load(script.script)
            except redis.ResponseError as error:
                raise located(error, self._composed.get(name)) from None

    def translate(self, error: redis.ResponseError) -> Exception:
        """The exception for a script's error reply (its place in the files named)."""
        return translate_script_error(located(error))

    def _run(
        self, spec: ScriptSpec, keys: Sequence[str], args: Sequence[Any], client: Any = None
    ) -> Any:
        """Run ``spec``'s script; its ``RUNQ`` errors become exceptions."""
        try:
            return self._scripts[spec.name](keys=keys, args=args, client=client)
        except redis.exceptions.NoPermissionError:
            raise  # the caller names the server (broker.core)
        except redis.ResponseError as error:
            raise translate_script_error(located(error, self._composed.get(spec.name))) from None

    # ---- one method per script; KEYS and ARGV as its spec (and header) declares ----------
    # ``client``: a pipeline to queue the call on (its reply comes from ``execute()``).
