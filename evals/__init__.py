"""Offline evaluation of planners (issue: eval harness). Imports nothing from the CLI."""
