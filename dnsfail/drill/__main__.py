"""``python -m dnsfail.drill``."""

from dnsfail.drill.drill import main

raise SystemExit(main())
