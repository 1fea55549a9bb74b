"""`python -m launchready_sdk.cli` is the `launchready` command."""

from launchready_sdk.cli import main

raise SystemExit(main())
