"""Engines and workers as long-running processes: the engine service (leases, takeover,
stall checks), worker serving, the process registry with heartbeats, alerts, Prometheus
metrics, and housekeeping of finished missions."""
