"""runq: Prefect 2's work queues and agents, rebuilt on Redis.

The public face of the package: ``from runq import Broker, WorkQueue, FlowRun, StateType,
RunqError, ...``. The parts live in ``runq.broker`` (the only code that talks to Redis),
``runq.engine`` (what runs inside a run's infrastructure), ``runq.display`` (what the CLI
and the UI both show), ``runq.agent`` (the agent and its infrastructures),
``runq.control`` (the ``runq`` command line and the scheduler service) and ``runq.ui``
(``runq ui``); in the repository they are the top-level folders of those names,
installed under this one import name so that nothing else in site-packages is touched.
"""

from runq.broker import *  # noqa: F403 - the broker's public API is runq's
from runq.broker import __all__ as __all__
