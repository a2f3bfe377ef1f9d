"""Ansible inventories (INI or YAML) read as a Reaper lab: `parse` reads the file, `hosts`
maps each host's variables to connection settings, `load` builds the lab."""

from reaper.inventory.load import LAB_TYPE, load_inventory, parse_inventory, resolve_host_vars

__all__ = ["LAB_TYPE", "load_inventory", "parse_inventory", "resolve_host_vars"]
