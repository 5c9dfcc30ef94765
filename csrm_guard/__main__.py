"""Allow ``python -m csrm_guard``."""

from __future__ import annotations

import sys

from csrm_guard.cli import main

sys.exit(main())
