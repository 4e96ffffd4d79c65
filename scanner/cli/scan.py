"""The ``scan`` command (the default one): options in, a request built, the scan run."""

from __future__ import annotations

import typer

from scanner.cli import options as o
from scanner.cli import ping, run
from scanner.cli.app import app, env_of
from scanner.cli.request import build_request, explicit_params, resume_request


@app.command(
    "scan",
    help="Scan TARGETs (addresses, CIDRs, ranges like 198.18.0.1-20, host names).",
)
def scan_command(
    ctx: typer.Context,
    targets: o.Targets = None,
    ports: o.Ports = None,
    top: o.TopPorts = None,
    udp: o.Udp = False,
    tcp: o.Tcp = False,
    defeat_icmp_ratelimit: o.DefeatIcmp = False,
    targets_file: o.TargetsFile = None,
    exclude: o.Exclude = None,
    exclude_file: o.ExcludeFile = None,
    output: o.Output = None,
    xml_output: o.XmlOutput = None,
    normal_output: o.NormalOutput = None,
    grep_output: o.GrepOutput = None,
    all_outputs: o.AllOutputs = None,
    fmt: o.Format = None,
    expect: o.Expect = None,
    shard: o.ShardOpt = None,
    resume: o.Resume = None,
    show_all: o.ShowAll = False,
    concurrency: o.Concurrency = o.CONCURRENCY,
    rate: o.Rate = None,
    max_rate: o.MaxRate = None,
    min_rate: o.MinRate = None,
    retries: o.Retries = o.RETRIES,
    max_retries: o.MaxRetries = None,
    host_timeout: o.HostTimeout = None,
    timing_template: o.TimingTemplate = None,
    min_rtt: o.MinRtt = o.MIN_RTT,
    max_rtt: o.MaxRtt = o.MAX_RTT,
    initial_rtt: o.InitialRtt = o.INITIAL_RTT,
    seed: o.Seed = None,
    workers: o.Workers = None,
    quiet: o.Quiet = False,
    no_evidence: o.NoEvidence = False,
    evidence_timeout: o.EvidenceTimeout = o.EVIDENCE_TIMEOUT,
    explain: o.Explain = False,
    ping_scan: o.PingScan = False,
    discover: o.Discover = False,
    skip_discovery: o.SkipDiscovery = False,
    no_dns: o.NoDns = False,
    open_only: o.OpenOnly = False,
    version_scan: o.VersionScan = False,
    fast: o.Fast = False,
    exclude_ports: o.ExcludePorts = None,
    sequential: o.Sequential = False,
    verbose: o.Verbose = 0,
    reason: o.ShowReason = False,
    ipv6: o.Ipv6 = False,
) -> None:
    env = env_of(ctx)
    if resume is not None:
        request = resume_request(ctx, env, resume)
    else:
        request = build_request(env.argv, ctx.params, explicit_params(ctx))
    if request.ping_only:
        if request.resumed is not None:
            request.resumed.close()
        raise typer.Exit(ping.run(request, env))
    raise typer.Exit(run.run_scan(request, env))
