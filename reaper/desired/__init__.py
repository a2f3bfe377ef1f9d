"""Desired state (lab schema 2): typed resources grouped in roles, the dependency graph
between them within and across hosts, the diff of desired against observed state, and the
shipped profiles."""
