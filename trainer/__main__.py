"""``python -m trainer``: see :mod:`trainer.cli`."""
import sys

from .cli import main

sys.exit(main())
