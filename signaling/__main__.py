"""`python -m signaling`: the same as the `tongbu` command."""

from signaling.cli import main

raise SystemExit(main())
