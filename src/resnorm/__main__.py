"""``python -m resnorm`` (and ``torchrun -m resnorm train ...``)."""

import sys

from resnorm.cli import main

sys.exit(main())
