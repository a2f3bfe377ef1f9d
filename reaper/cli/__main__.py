"""`python -m reaper.cli`: what the `reaper` script runs."""

from reaper.cli.app import main

raise SystemExit(main())
