"""Benchmarks that print figures: the engine and backends on simulated hosts (`run`, with
worker processes from `procs` in a throwaway `space`), and discover over SSH on namespace
hosts against Ansible (`ssh`)."""
