"""``python -m dnsfail`` runs the command line."""

from __future__ import annotations

from dnsfail.cli.main import main

raise SystemExit(main())
