"""`python -m signaling`: the same as the `tongbu` command."""

from signaling.cli.main import main

raise SystemExit(main())
