"""``python -m cnnlab``: the same as the ``cnnlab`` console script."""

from cnnlab.cli import main

raise SystemExit(main())
