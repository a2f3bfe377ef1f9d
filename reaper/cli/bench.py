"""`reaper bench` (engine and backends on simulated hosts) and `reaper bench ssh` (discover on
real sshd hosts against Ansible): flags in, figures out."""

from __future__ import annotations

from dataclasses import asdict

from reaper.cli.context import Cli
from reaper.errors import ConfigError

__all__ = ["cmd_bench"]


async def cmd_bench(cli: Cli) -> int:
    if cli.args.target == "ssh":
        return await _ssh(cli)
    return await _sim(cli)


async def _sim(cli: Cli) -> int:
    from reaper.bench.run import BenchOptions, BenchResult, bench_backends, render

    a = cli.args
    try:
        sizes = [int(x) for x in (a.hosts or "100,1000,10000").split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--hosts takes comma-separated numbers, not {a.hosts!r}") from None
    if not sizes or min(sizes) < 1:
        raise ConfigError("--hosts needs at least one positive host count")
    options = BenchOptions(
        workers=a.workers,
        concurrency=a.concurrency,
        repeat=a.repeat,
        in_process=a.in_process,
        desired=a.desired,
        max_in_flight=a.max_in_flight,
        latency_target=a.latency_target,
    )

    def progress(r: BenchResult, i: int) -> None:
        if not a.json:
            cli.err.print(
                f"{r.backend} {r.hosts} hosts, run {i + 1}: {r.tasks_per_s:,.0f} tasks/s, "
                f"p99 {r.p99_latency_ms:,.1f} ms"
            )

    labels = (a.backend or "memory,sqlite").split(",")
    results = await bench_backends(labels, sizes, options, on_run=progress)
    if a.json:
        cli.print_json([asdict(r) for r in results])
    else:
        cli.out.print(render(results, a.repeat))
    return 0


async def _ssh(cli: Cli) -> int:
    from reaper.bench.converge_view import converge_rows, render_converge
    from reaper.bench.ssh import render, sizes_of, ssh_bench

    def say(line: str) -> None:
        if not cli.args.json:
            cli.err.print(line)

    backend = (cli.args.backend or "sqlite").split(",")[0]
    sizes = sizes_of(cli.args.hosts)
    bench = await ssh_bench(sizes, backend, say)
    converge = await converge_rows(max(sizes), say)
    if cli.args.json:
        cli.print_json(
            {
                "backend": bench.backend,
                "ansible": bench.ansible,
                "discover": [asdict(r) for r in bench.rows],
                "latency": asdict(bench.latency),
                "converge": [asdict(r) for r in converge],
            }
        )
    else:
        cli.out.print(render(bench))
        cli.out.print(render_converge(converge))
    return 0
