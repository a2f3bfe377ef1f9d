#!/usr/bin/env python3
"""Run Reaper's main job: with no arguments, the console demo (`reaper demo`)."""

import sys

from reaper.cli import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:] or ["demo"]))
