"""`reaper plan` reads and changes nothing; `reaper run --check` changes nothing and says
what would change; both on the shipped desired-state labs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from reaper.cli.plan import discover_lab, plan_report
from reaper.desired.progress import progress
from reaper.lab import parse_lab
from reaper.models import EventKind, EventRecord, MissionState
from tests.worlds import LAB, World

from .conftest import Run

LABS = Path(__file__).resolve().parents[2] / "reaper" / "labs"


def test_plan_shows_each_resource_and_the_order_as_json(cli: Run) -> None:
    rc, out, err = cli("plan", str(LABS / "ad-lab.yaml"), "--json")
    assert rc == 0, err
    report = json.loads(out)
    assert set(report["hosts"]) == {"dc-01", "srv-01", "ws-01", "db-01", "web-01", "mac-01"}
    assert sum(report["summary"][a] for a in ("add", "change", "remove", "ok")) == 23
    member = next(e for e in report["hosts"]["srv-01"] if e["resource"].startswith("domain_"))
    assert "dc-01:ad_domain/lab.local" in member["after"]
    order = report["order"]
    assert order.index("dc-01:ad_domain/lab.local") < order.index(
        "srv-01:domain_membership/lab.local"
    )
    rc, out, _ = cli("plan", str(LABS / "lockout-lab.yaml"), "--graph")
    assert rc == 0 and "app-01" in out and "order of the run:" in out and "plan:" in out


def test_plan_of_a_stage_lab_is_one_line_exit_2(cli: Run) -> None:
    rc, _, err = cli("plan", str(LABS / "demo.yaml"))
    assert rc == 2 and "needs a desired-state lab (schema 2)" in err
    assert len(err.strip().splitlines()) == 1


async def test_plan_runs_only_discovers_and_the_hosts_stay_as_they_were() -> None:
    world = World()
    world.seen[("web-01", "package/nginx")] = {"version": "1.22"}
    before = dict(world.seen)
    state = await discover_lab(parse_lab(LAB), runners={"sim": world})
    assert world.seen == before
    assert {a for _, a in world.log} == {"linux.discover"}
    report = plan_report(progress(state))
    web1 = {e["resource"]: e["action"] for e in report["hosts"]["web-01"]}
    assert web1["package/nginx"] == "ok" and web1["user/deploy"] == "add"


def test_run_check_changes_nothing_and_exits_3_when_changes_are_pending(cli: Run) -> None:
    rc, out, err = cli(
        "run", str(LABS / "lockout-lab.yaml"), "--check", "--no-live", "--no-input", "--json"
    )
    report = json.loads(out)
    assert rc == 3, err
    assert report["status_reason"].startswith("check mode: ")
    assert "nothing was changed" in report["status_reason"]
    rc, out, _ = cli("events", "lockout-lab", "--json", "--kind", "task.planned")
    planned = [json.loads(line) for line in out.splitlines() if line.strip()]
    ensures = [e for e in planned if ".ensure_" in e["payload"]["action"]]
    assert ensures and all(e["payload"]["params"]["check_mode"] for e in ensures)
    rc, _, err = cli("run", str(LABS / "demo.yaml"), "--check", "--no-live")
    assert rc == 2 and "--check needs a desired-state lab" in err


def test_facts_show_the_observed_state_of_each_declared_resource(cli: Run) -> None:
    rc, _, err = cli("run", str(LABS / "lockout-lab.yaml"), "--no-live", "--no-input")
    assert rc == 3, err  # the refused sshd option leaves it incomplete
    rc, out, _ = cli("facts", "lockout-lab", "--json")
    observed = json.loads(out)["app-01"]["resources"]
    assert set(observed) == {
        "package/auditd", "service/auditd", "sshd_option/PermitRootLogin",
        "sshd_option/X11Forwarding",
    }  # fmt: skip
    assert observed["sshd_option/X11Forwarding"] == {"value": "no"}
    assert observed["sshd_option/PermitRootLogin"]["value"] != "no"  # refused: untouched
    rc, out, _ = cli("facts", "lockout-lab")
    assert "declared resources" in out and "sshd_option/PermitRootLogin (failed)" in out


def test_demo_runs_the_shipped_desired_state_labs(cli: Run) -> None:
    rc, out, err = cli("demo", "--lab", "ad", "--no-live", "--no-input", "--json")
    assert rc == 0, err
    assert json.loads(out)["status_reason"] == "converged: all 23 resources on 6 hosts"


def test_plan_reads_the_stored_sim_worlds_a_run_converged_and_writes_none(
    cli: Run, tmp_path: Path
) -> None:
    # Found by use: after `reaper run` converged a sim lab, `reaper plan` of it still showed
    # every resource to add (it read fresh worlds of its own, not the store's).
    import sqlite3

    lab = str(LABS / "ad-lab.yaml")
    rc, _, err = cli("run", lab, "--no-live", "--no-input", "--mission-id", "first")
    assert rc == 0, err
    # (a desired-state lab has no stage goal to announce: it says what it declares)
    assert "mission first created (6 hosts, 23 declared resources)" in err

    def worlds() -> list[tuple[str, str, int]]:
        with sqlite3.connect(tmp_path / "reaper.db") as db:
            return sorted(db.execute("SELECT lab, host_id, version FROM sim_worlds"))

    stored = worlds()
    assert len(stored) == 6
    rc, out, err = cli("plan", lab, "--json")
    assert rc == 0, err
    summary = json.loads(out)["summary"]
    assert (summary["ok"], summary["add"], summary["change"]) == (23, 0, 0)
    assert worlds() == stored
    # A drift shows on the next plan: the world of web-01 without the motd it converged.
    rc, _, err = cli("sim", "reset", "ad-lab", "--host", "web-01")
    assert rc == 0, err
    rc, out, _ = cli("plan", lab, "--json")
    web1 = {e["resource"]: e["action"] for e in json.loads(out)["hosts"]["web-01"]}
    assert web1["file//etc/motd"] == "change" and web1["package/curl"] == "add"
    assert [w for w in worlds() if w[1] == "web-01"] == []


def test_a_converged_host_row_shows_its_key_facts(cli: Run, tmp_path: Path) -> None:
    # Found by use: a desired-state row showed the current or held resource, and nothing at
    # all once the host had converged (a stage row shows the host's OS and kernel).
    from rich.console import Console

    from reaper.cli.console import render_hosts
    from reaper.infra.sqlite import SqliteBackend

    rc, _, err = cli("run", str(LABS / "ad-lab.yaml"), "--no-live", "--no-input", "--json")
    assert rc == 0, err

    async def load() -> tuple[MissionState | None, list[EventRecord]]:
        backend = SqliteBackend(tmp_path / "reaper.db")
        try:
            return await backend.store.load("ad-lab"), await backend.store.events("ad-lab")
        finally:
            await backend.close()

    state, events = asyncio.run(load())
    assert state is not None
    console = Console(width=200, record=True)
    console.print(render_hosts(state))
    lines = console.export_text().splitlines()
    rows = {line.split()[0]: line for line in lines if "(sim)" in line}
    assert "Debian GNU/Linux 12 (bookworm)" in rows["db-01"]
    assert "Microsoft Windows" in rows["dc-01"]
    # The progress column counts resources, and says so (it was headed "stage").
    assert "resources" in lines[0] and "stage" not in lines[0]
    assert rows["db-01"].split()[5] == "7/7"
    # Past the rows shown, the rest are summed up by how far they converged, not by stage.
    console = Console(width=200, record=True)
    console.print(render_hosts(state, limit=2))
    tail = console.export_text().splitlines()[-1]
    assert "… 4 more" in tail and "converged 4" in tail
    # The ledger's first entry names the mission's aim: its declared resources, not a stage.
    created = events[0]
    assert created.kind is EventKind.MISSION_CREATED
    assert created.payload["goal"] == "desired state" and created.payload["resources"] == 23


def test_plan_with_a_store_out_of_reach_is_one_line_exit_4(cli: Run) -> None:
    # Its sim hosts' worlds are in the store: before, each discover failed with a traceback
    # and the plan ended "23 unreadable".
    rc, out, err = cli(
        "plan",
        str(LABS / "ad-lab.yaml"),
        "--store",
        "postgresql://127.0.0.1:1/x",
        "--queue",
        "memory",
    )
    assert rc == 4 and out == ""
    assert err.startswith("reaper: error: postgres: connection failed") and err.count("\n") == 1


def test_the_shipped_demo_labs_are_paced_to_be_watched() -> None:
    # Found by use: `reaper demo --lab ad` converged in 0.1 s, too fast to see a member wait
    # for its domain controller. A host that sets its own latency keeps it.
    from reaper.cli.missions import DEMO_LATENCY_S, _paced
    from reaper.lab import load_lab

    ad = _paced(load_lab(LABS / "ad-lab.yaml"))
    assert {h.sim.latency_s if h.sim else None for h in ad.hosts} == {DEMO_LATENCY_S}
    demo = load_lab(LABS / "demo.yaml")
    assert _paced(demo).hosts == demo.hosts


def test_a_desired_missions_json_report_has_each_resource_with_why(cli: Run) -> None:
    # Found by use: `reaper status --json` of a desired-state mission said goal "baselined",
    # 0 hosts at the goal, and nothing of its resources.
    rc, out, err = cli("run", str(LABS / "lockout-lab.yaml"), "--no-live", "--no-input", "--json")
    assert rc == 3, err
    report = json.loads(out)
    assert report["converges"] and report["resource_totals"] == {"failed": 1, "ok": 3}
    assert (report["goal_hosts"], report["total_hosts"]) == (0, 1)
    host = report["hosts"]["app-01"]
    assert host["resource_counts"]["failed"] == 1
    refused = host["resources"]["sshd_option/PermitRootLogin"]
    assert refused["status"] == "failed" and "lock Reaper out" in refused["reason"]
    assert host["resources"]["package/auditd"] == {"status": "ok", "change": None, "reason": None}


def test_the_recap_names_resources_left_waiting_on_a_refused_restart(
    cli: Run, tmp_path: Path
) -> None:
    # Found by use: a policy refused dc-01's restart after its promotion; the recap said
    # only "3 not converged", not which nor what they still wait for.
    text = (LABS / "ad-lab.yaml").read_text()
    assert "policy: standard\n" in text
    denied = "policy: {default: allow, rules: [{action: '*.reboot', decision: deny}]}\n"
    lab = tmp_path / "no-reboot.yaml"
    lab.write_text(text.replace("policy: standard\n", denied))
    rc, out, err = cli("run", str(lab), "--no-live", "--no-input")
    assert rc == 3, err
    assert "incomplete" in out
    assert "not converged dc-01:ad_user/alice: waiting for dc-01:ad_domain/lab.local" in out


def test_plan_says_which_changes_the_labs_policy_would_refuse_or_ask_about(
    cli: Run, tmp_path: Path
) -> None:
    # Found by use: the lockout lab's plan listed PermitRootLogin in the run order as if it
    # would run; the run then refused it.
    rc, out, err = cli("plan", str(LABS / "lockout-lab.yaml"), "--json")
    assert rc == 0, err
    report = json.loads(out)
    assert (report["summary"]["deny"], report["summary"]["ask"]) == (1, 0)
    entries = {e["resource"]: e for e in report["hosts"]["app-01"]}
    verdict = entries["sshd_option/PermitRootLogin"]["policy"]
    assert verdict["code"] == "lockout" and "connect as a sudo user first" in verdict["reason"]
    assert "policy" not in entries["package/auditd"]
    rc, out, _ = cli("plan", str(LABS / "lockout-lab.yaml"))
    assert "app-01:sshd_option/PermitRootLogin  (refused)" in out
    assert out.rstrip().endswith("1 refused by the policy")
    cautious = tmp_path / "cautious.yaml"
    text = (LABS / "lockout-lab.yaml").read_text()
    text = text.replace("policy: standard", "policy: cautious")
    cautious.write_text(text.replace('X11Forwarding, value: "no"', 'X11Forwarding, value: "yes"'))
    rc, out, _ = cli("plan", str(cautious))
    assert "~ sshd_option/X11Forwarding  (value: no → yes)  (asks for approval)" in out
    assert out.rstrip().endswith("1 refused by the policy; 1 to approve")


def test_check_mode_counts_a_change_that_needs_another_first_and_does_not_fail_it(
    cli: Run,
) -> None:
    # Found by use: `run --check` of the AD lab failed ad_domain (no AD-Domain-Services yet)
    # and postgresql's service (no package yet), and blocked what came after them: their
    # checks ran against hosts without the change each needs first.
    rc, out, err = cli(
        "run", str(LABS / "ad-lab.yaml"), "--check", "--no-live", "--no-input", "--json"
    )
    assert rc == 3, err
    report = json.loads(out)
    assert report["status_reason"] == (
        "check mode: 21 of 23 resources would change (5 after a change they need first), "
        "0 failed, 0 blocked; nothing was changed"
    )
    db = report["hosts"]["db-01"]["resources"]
    assert db["service/postgresql"]["reason"] == (
        "would change after db-01:package/postgresql (checked once that is done)"
    )
    rc, out, _ = cli("plan", str(LABS / "ad-lab.yaml"), "--json")
    assert json.loads(out)["summary"]["ok"] == 2  # and nothing was changed
