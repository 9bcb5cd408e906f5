"""``python -m runq ...`` works like the ``runq`` script (agents start engines this way)."""

from runq.control.entry import main

main()
