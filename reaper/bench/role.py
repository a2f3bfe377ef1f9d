"""The converge row's role: 8 resources, as Reaper declares them (reaper/bench/ansible.py
holds the same role as an Ansible playbook), and what each host is given beforehand."""

from __future__ import annotations

from typing import Any

__all__ = ["ANSIBLE_DEPS", "INIT_SCRIPT", "MOTD", "PACKAGE", "ROLE", "SYSCTL"]

PACKAGE = "tree"  # small, needs only libc6, and not in the test rootfs
# Ansible's apt module installs python3-apt on the host at its first run: the mirror has it.
ANSIBLE_DEPS = ["python3-apt", "python-apt-common", "distro-info-data"]
INIT_SCRIPT = """#!/bin/sh
### BEGIN INIT INFO
# Provides:          reaper-demo
# Required-Start:
# Required-Stop:
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: a daemon that only sleeps
### END INIT INFO
PIDFILE=/run/reaper-demo.pid
case "$1" in
  start) start-stop-daemon --start --quiet --background --make-pidfile --pidfile $PIDFILE \
           --exec /bin/sleep -- infinity </dev/null >/dev/null 2>&1 ;;
  stop) start-stop-daemon --stop --quiet --oknodo --remove-pidfile --pidfile $PIDFILE ;;
  status) start-stop-daemon --status --pidfile $PIDFILE ;;
  restart) "$0" stop; "$0" start ;;
  *) echo "Usage: $0 {start|stop|status|restart}" >&2; exit 3 ;;
esac
"""
MOTD = "converged by reaper\n"
SYSCTL = ("net.ipv4.ip_forward", "1")  # per network namespace
ROLE: list[dict[str, Any]] = [
    {"kind": "package", "name": PACKAGE},
    {"kind": "group", "name": "deployers"},
    {"kind": "user", "name": "deploy", "groups": ["deployers"], "shell": "/bin/bash",
     "after": ["group/deployers"]},
    {"kind": "file", "path": "/etc/reaper-motd", "content": MOTD, "mode": "0640",
     "owner": "deploy", "group": "deployers", "after": ["user/deploy"]},
    {"kind": "directory", "path": "/srv/app", "mode": "0750"},
    {"kind": "sshd_option", "name": "MaxAuthTries", "value": "4"},
    {"kind": "setting", "name": SYSCTL[0], "value": SYSCTL[1]},
    {"kind": "service", "name": "reaper-demo", "state": "running", "enabled": True},
]  # fmt: skip
