"""``python -m dnsfail`` runs the command line."""

from __future__ import annotations

from dnsfail.cli import main

raise SystemExit(main())
