"""``python -m syncd`` runs the CLI, so tests and checkouts need no installed console script."""

from syncd.cli import main

raise SystemExit(main())
