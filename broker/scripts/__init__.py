"""Loads the Lua scripts once and calls them through typed wrappers.

Each ``.lua`` file beside this module is one atomic operation. Work-queue scripts get the
prelude ``_common.lua`` (shared KEYS names and helpers) prepended at load time, so each
file holds only its own logic while the server still runs one self-contained script.
redis-py's ``register_script`` sends ``EVALSHA`` and loads the script once after a
server restart or ``SCRIPT FLUSH``.

A file's first line may be a Redis 7 shebang (``#!lua``, ``#!lua flags=allow-oom``,
``#!lua flags=no-writes``): it says how the script behaves when memory is full. It is
kept at the top of the text sent to Redis 7 and left out for Redis 6.2, which does not
know it (the scripts order their writes for 6.2 instead; see ``_common.lua``).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any, Sequence

import redis
from redis.commands.core import Script

from ..errors import translate_script_error
from ..keys import QueueKeys

QUEUE_SCRIPTS = (
    "queue_create",
    "queue_read",
    "queue_update",
    "queue_delete",
    "run_create",
    "run_cancel",
    "claim",
    "set_state",
    "run_annotate",
    "runs_unschedule",
    "heartbeat",
    "sweep",
    "preview",
    "log_append",
)
GLOBAL_SCRIPTS = ("deployment_save",)


@cache
def source(name: str, shebang: bool = True) -> str:
    """The text sent to Redis for script ``name`` (prelude included for queue scripts);
    ``shebang``: keep the file's Redis 7 flags line (False for Redis 6.2)."""
    own = resources.files(__package__).joinpath(f"{name}.lua").read_text()
    first, _, rest = own.partition("\n")
    flags = ""
    if first.startswith("#!"):
        flags, own = first + "\n", rest
    if name in QUEUE_SCRIPTS:
        prelude = resources.files(__package__).joinpath("_common.lua").read_text()
        own = prelude + "\n" + own
    return (flags if shebang else "") + own


def server_major_version(client: Any) -> int:
    """The major version of the Redis behind ``client`` (one node's, on a cluster)."""
    info = client.info("server")
    if "redis_version" not in info:  # a cluster client may answer per node
        info = next(iter(info.values()))
    return int(str(info["redis_version"]).split(".")[0])


class Scripts:
    """The registered scripts of one Redis client, registered when first used (the
    server's version decides whether the flags line is sent)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._registered: dict[str, Script] | None = None

    @property
    def _scripts(self) -> dict[str, Script]:
        if self._registered is None:
            shebang = server_major_version(self._client) >= 7
            self._registered = {
                name: self._client.register_script(source(name, shebang))
                for name in QUEUE_SCRIPTS + GLOBAL_SCRIPTS
            }
        return self._registered

    def load_all(self, *, only_missing: bool = False) -> None:
        """SCRIPT LOAD every script now (agents do, at start): a client whose ACL allows
        EVALSHA but not SCRIPT LOAD (the engine user) can then run them. On a cluster
        both commands go to every primary."""
        scripts = list(self._scripts.values())
        if only_missing:
            found = self._client.script_exists(*(script.sha for script in scripts))
            if isinstance(found, dict):  # a cluster client answers per node
                found = [all(flags) for flags in zip(*found.values())]
            scripts = [script for script, exists in zip(scripts, found) if not exists]
        for script in scripts:
            self._client.script_load(script.script)

    def queue(self, name: str, keys: QueueKeys, args: Sequence[Any], client=None) -> Any:
        """Run queue script ``name`` on one queue's keys; RUNQ errors become exceptions."""
        return self.call(name, keys.script_keys, args, client)

    def call(self, name: str, keys: Sequence[str], args: Sequence[Any], client=None) -> Any:
        try:
            return self._scripts[name](keys=keys, args=args, client=client)
        except redis.exceptions.NoPermissionError:
            raise  # the caller names the server (broker.api)
        except redis.ResponseError as error:
            raise translate_script_error(error) from None
