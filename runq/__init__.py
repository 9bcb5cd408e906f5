"""runq: Prefect 2's work queues and agents, rebuilt on Redis.

The public face of the package: ``from runq import Broker, WorkQueue, FlowRun, StateType,
RunqError, ...``. The parts live in ``runq.broker`` (the only code that talks to Redis),
``runq.agent`` (the agent, its infrastructures and the engine) and ``runq.control`` (the
``runq`` command line and the scheduler service); in the repository they are the
top-level folders ``broker/``, ``agent/`` and ``control/``, installed under this one
import name so that nothing else in site-packages is touched.
"""

from runq.broker import *  # noqa: F403 - the broker's public API is runq's
from runq.broker import __all__ as __all__
