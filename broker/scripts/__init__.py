"""Loads the Lua scripts once and calls them through typed wrappers.

Each ``.lua`` file beside this module is one atomic operation. Work-queue scripts get the
prelude ``_common.lua`` (shared KEYS names and helpers) prepended at load time, so each
file holds only its own logic while the server still runs one self-contained script.
redis-py's ``register_script`` sends ``EVALSHA`` and falls back to ``EVAL`` once after a
server restart or ``SCRIPT FLUSH``.
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
    "claim",
    "set_state",
    "run_annotate",
    "runs_unschedule",
    "heartbeat",
    "sweep",
    "preview",
)
GLOBAL_SCRIPTS = ("deployment_save",)


@cache
def source(name: str) -> str:
    """The text sent to Redis for script ``name`` (prelude included for queue scripts)."""
    own = resources.files(__package__).joinpath(f"{name}.lua").read_text()
    if name in QUEUE_SCRIPTS:
        prelude = resources.files(__package__).joinpath("_common.lua").read_text()
        return prelude + "\n" + own
    return own


class Scripts:
    """The registered scripts of one Redis client."""

    def __init__(self, client: redis.Redis) -> None:
        self._scripts: dict[str, Script] = {
            name: client.register_script(source(name))
            for name in QUEUE_SCRIPTS + GLOBAL_SCRIPTS
        }

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
