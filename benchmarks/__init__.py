"""Developer tools for measuring Reaper (not installed with the package)."""
