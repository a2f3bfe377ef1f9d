"""The `reaper` command line: `app` parses and maps errors to exit codes, `context` is what
every command shares, and one module per command group acts (`missions`, `processes`,
`bench`, with `drive` running a mission at the console). Nothing in the library imports
this package."""

from reaper.cli.app import main

__all__ = ["main"]
