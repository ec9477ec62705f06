"""``python -m engine``: one rank of a torchrun job (see engine.worker)."""

import sys

from engine.worker import main

sys.exit(main())
