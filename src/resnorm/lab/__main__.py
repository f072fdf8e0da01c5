"""``python -m resnorm.lab ...``: the lab's commands (see `resnorm.lab.cli`)."""

import sys

from resnorm.lab.cli import main

sys.exit(main())
