"""Ansible for `reaper bench ssh`: ansible-core in the benchmark's own venv (never Reaper's),
an inventory of the namespace hosts (same key, user, host-key checking as Reaper's), and the
converge row's role as a playbook with the matching modules.

The sysctl setting uses ansible.builtin.copy of /etc/sysctl.d plus a `sysctl -p` handler:
ansible.posix.sysctl is not in ansible-core, and only ansible-core is installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reaper.bench.role import MOTD, PACKAGE, SYSCTL

if TYPE_CHECKING:
    from benchmarks.netns import NsHost, NsLab

__all__ = ["VENV", "AnsibleRun", "ansible_converge", "ensure_ansible", "inventory_text"]

VENV = Path.home() / ".cache" / "reaper" / "bench-ansible-venv"
_RECAP = re.compile(r"^\S+\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
PLAYBOOK = f"""- hosts: all
  become: true
  tasks:
    - ansible.builtin.apt: {{name: {PACKAGE}, update_cache: true, cache_valid_time: 3600}}
    - ansible.builtin.group: {{name: deployers}}
    - ansible.builtin.user: {{name: deploy, groups: deployers, shell: /bin/bash}}
    - ansible.builtin.copy:
        dest: /etc/reaper-motd
        content: "{MOTD.strip()}\\n"
        mode: "0640"
        owner: deploy
        group: deployers
    - ansible.builtin.file: {{path: /srv/app, state: directory, mode: "0750"}}
    - ansible.builtin.lineinfile:
        path: /etc/ssh/sshd_config
        regexp: "^#?MaxAuthTries"
        line: MaxAuthTries 4
        validate: /usr/sbin/sshd -t -f %s
      notify: reload sshd
    - ansible.builtin.copy:
        dest: /etc/sysctl.d/99-reaper.conf
        content: "{SYSCTL[0]} = {SYSCTL[1]}\\n"
      notify: apply sysctl
    - ansible.builtin.service: {{name: reaper-demo, state: started, enabled: true}}
  handlers:
    - name: reload sshd
      ansible.builtin.shell: kill -HUP "$(pgrep -o -x sshd)"
    - name: apply sysctl
      ansible.builtin.command: sysctl -p /etc/sysctl.d/99-reaper.conf
"""


@dataclass(frozen=True, slots=True)
class AnsibleRun:
    seconds: float
    tasks: int
    changed: int
    status: str


def ensure_ansible(say: Callable[[str], None], venv: Path = VENV) -> tuple[Path | None, str]:
    """`ansible` in the benchmark's venv (created and pip-installed when missing), or a note
    saying why Ansible is skipped."""
    exe = venv / "bin" / "ansible"
    if not exe.exists():
        say(f"installing ansible-core into {venv}…")
        steps = [["python3", "-m", "venv", str(venv)],
                 [str(venv / "bin" / "pip"), "install", "-q", "ansible-core"]]  # fmt: skip
        for argv in steps:
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
                return None, f"Ansible skipped: cannot install ansible-core ({tail[0]})"
    version = subprocess.run(
        [str(exe), "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()[:1]
    return exe, (version[0] if version else "ansible")


def inventory_text(lab: NsLab, hosts: list[NsHost], user: str) -> str:
    return (
        "[bench]\n" + "".join(f"{h.name} ansible_host={h.addr}\n" for h in hosts) + "[bench:vars]\n"
        f"ansible_user={user}\nansible_ssh_private_key_file={lab.client_key}\n"
        "ansible_python_interpreter=/usr/bin/python3\n"
        f"ansible_ssh_common_args='-o UserKnownHostsFile={lab.known_hosts} "
        "-o StrictHostKeyChecking=yes'\n"
    )


def ansible_env(run_dir: Path, control_dir: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"},
        "ANSIBLE_HOME": str(run_dir),
        "ANSIBLE_LOCAL_TEMP": str(run_dir / "tmp"),
        # A fresh ControlPath dir per run: no master connection survives from the last run,
        # just as each Reaper mission connects afresh.
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_PIPELINING": "True",  # Ansible's own fastest setting for ssh
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
    }


def ansible_converge(
    exe: Path, lab: NsLab, hosts: list[NsHost], user: str, tmp: Path
) -> AnsibleRun:
    """One `ansible-playbook -f N` of the converge role on `hosts`, timed."""
    run_dir = Path(tempfile.mkdtemp(prefix="ansible-converge-", dir=tmp))
    (run_dir / "hosts.ini").write_text(inventory_text(lab, hosts, user))
    (run_dir / "role.yml").write_text(PLAYBOOK)
    argv = [str(exe.with_name("ansible-playbook")), "-i", str(run_dir / "hosts.ini"),
            "-f", str(len(hosts)), str(run_dir / "role.yml")]  # fmt: skip
    # Short, outside `run_dir`: a ControlPath over 108 bytes makes every host unreachable
    # (pytest's tmp dirs are that long).
    with tempfile.TemporaryDirectory(prefix="rcp-") as control_dir:
        env = ansible_env(run_dir, Path(control_dir))
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        seconds = time.perf_counter() - started
    recap = [tuple(int(x) for x in m) for m in _RECAP.findall(done.stdout)]
    bad = sum(r[2] + r[3] for r in recap)
    ok = done.returncode == 0 and len(recap) == len(hosts) and bad == 0
    tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["?"]
    return AnsibleRun(
        seconds,
        sum(r[0] for r in recap),
        sum(r[1] for r in recap),
        "ok" if ok else f"ansible-playbook exit {done.returncode}: {tail[0][:200]}",
    )
