"""``python -m runq.engine RUN_ID [--api URL]``: execute one claimed flow run."""

import sys

from runq.engine.entry import main

sys.exit(main(sys.argv[1:]))
