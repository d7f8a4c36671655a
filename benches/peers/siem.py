#!/usr/bin/env python3
"""Side-by-side benchmark of sealog's exports and forwarding.

    target/py-venv/bin/python benches/peers/siem.py [--events N] [--runs R]
        [--sealog PATH] [--workdir DIR]

Needs a release build of the CLI (cargo build --release -p sealog-cli), the
duckdb package in the Python running it (.ci/run installs it in
target/py-venv) and rsyslogd (apt-get install rsyslog rsyslog-gnutls).

Measures, on one store of N synthetic ~300-byte events (`sealog bench
--emit`), R times each, and prints the medians:
  - export throughput (MB/s of record bytes, events/s) and bytes per event:
    NDJSON, Parquet to one file, Parquet partitioned by date, against the
    store's own bytes per event;
  - the incident questions, answered by `sealog query`/`export` (end to end,
    a process each) and by DuckDB over the Parquet export (in process, warm,
    as an analyst's session would), with both answers compared;
  - forwarding events/s to rsyslog over TCP and over TLS (until caught up).
See docs/benchmarks.md ("Exports and forwarding") for a run.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import duckdb

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TLS = os.path.join(ROOT, "crates/sealog-cli/tests/fixtures/tls")


def run(cmd, **kw):
    started = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, **kw)
    return time.perf_counter() - started, out.stdout


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def rsyslog(workdir, tls):
    port = free_port()
    os.makedirs(os.path.join(workdir, "work"), exist_ok=True)
    conf = os.path.join(workdir, "rsyslog.conf")
    driver = 'module(load="imtcp")\n'
    if tls:
        driver = (
            f'global(DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="{TLS}/ca.pem" '
            f'DefaultNetstreamDriverCertFile="{TLS}/cert.pem" DefaultNetstreamDriverKeyFile="{TLS}/key.pem")\n'
            'module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")\n'
        )
    with open(conf, "w") as f:
        f.write(
            f'global(workDirectory="{workdir}/work" maxMessageSize="64k")\n{driver}'
            f'input(type="imtcp" address="127.0.0.1" port="{port}")\n'
            'template(name="m" type="string" string="%structured-data%\\n")\n'
            f'action(type="omfile" file="{workdir}/out.log" template="m")\n'
        )
    proc = subprocess.Popen(
        ["rsyslogd", "-n", "-f", conf, "-i", os.path.join(workdir, "pid")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("rsyslogd did not start")


QUESTIONS = [
    (
        "newest 100 events of one actor",
        ["query", "--actor", "user:u00000", "--limit", "100", "--format", "ndjson"],
        "actor_type = 'user' AND actor_id = 'u00000' ORDER BY seq DESC LIMIT 100",
    ),
    (
        "denied events of a tenant (all)",
        ["export", "--outcome", "denied", "--tenant", "tenant-003"],
        "outcome = 'denied' AND tenant = 'tenant-003' ORDER BY seq",
    ),
    (
        "exports by an actor (all)",
        ["export", "--action", "*.export", "--actor", "user:u00001"],
        "action LIKE '%.export' AND actor_type = 'user' AND actor_id = 'u00001' ORDER BY seq",
    ),
    (
        "action + outcome + tenant in one day (newest 100)",
        ["query", "--action", "customer.read", "--outcome", "success", "--tenant", "tenant-010",
         "--from", "2026-01-15", "--until", "2026-01-15", "--limit", "100", "--format", "ndjson"],
        "action = 'customer.read' AND outcome = 'success' AND tenant = 'tenant-010' "
        "AND time >= TIMESTAMPTZ '2026-01-15 00:00:00+00' AND time < TIMESTAMPTZ '2026-01-16 00:00:00+00' "
        "ORDER BY seq DESC LIMIT 100",
    ),
    (
        "events from one /16 network (all)",
        ["export", "--source-ip", "10.7.0.0/16"],
        "source_ip LIKE '10.7.%' ORDER BY seq",
    ),
    (
        "count of denied in 7 days",
        ["query", "--outcome", "denied", "--from", "2026-01-08", "--until", "2026-01-14", "--count"],
        None,
    ),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sealog", default=os.path.join(ROOT, "target/release/sealog"))
    ap.add_argument("--workdir")
    args = ap.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="sealog-siem-bench-")
    os.makedirs(work, exist_ok=True)
    store = os.path.join(work, "store")
    sealog = args.sealog
    n = args.events

    if not os.path.exists(store):
        events = os.path.join(work, "events.ndjson")
        with open(events, "wb") as f:
            subprocess.run([sealog, "bench", "--emit", "ndjson", "--events", str(n)], check=True, stdout=f)
        run([sealog, "--data-dir", store, "import", events])
        os.remove(events)
    stats = json.loads(run([sealog, "--data-dir", store, "stats", "--json"])[1])
    record_bytes = stats["bytes"]["records"]
    print("store:", json.dumps({k: stats[k] for k in stats if "per_event" in k}))

    results = {}

    def note(name, value):
        results.setdefault(name, []).append(value)

    for r in range(args.runs):
        for fmt, extra in [("ndjson", []), ("parquet-file", ["--format", "parquet"]),
                           ("parquet-dir", ["--format", "parquet"]), ("ocsf", ["--format", "ocsf"])]:
            out = os.path.join(work, f"out-{fmt}")
            shutil.rmtree(out, ignore_errors=True)
            if os.path.exists(out):
                os.remove(out)
            if fmt == "parquet-dir":
                os.makedirs(out)
                cmd = [sealog, "--data-dir", store, "export", *extra, "--out", out + "/"]
                secs, _ = run(cmd)
                size = dir_bytes(out)
            elif fmt == "parquet-file":
                secs, _ = run([sealog, "--data-dir", store, "export", *extra, "--out", out])
                size = os.path.getsize(out)
            else:
                with open(out, "wb") as f:
                    started = time.perf_counter()
                    subprocess.run([sealog, "--data-dir", store, "export", *extra], check=True, stdout=f)
                    secs = time.perf_counter() - started
                size = os.path.getsize(out)
            note(f"export {fmt} s", secs)
            note(f"export {fmt} MB/s (record bytes)", record_bytes / secs / 1e6)
            note(f"export {fmt} events/s", n / secs)
            note(f"export {fmt} bytes/event", size / n)

        con = duckdb.connect()
        con.execute("SET TimeZone='UTC'")
        lake = f"read_parquet('{work}/out-parquet-dir/**/*.parquet', hive_partitioning = true)"
        one = f"read_parquet('{work}/out-parquet-file')"
        for name, cli, where in QUESTIONS:
            secs, out = run([sealog, "--data-dir", store, *cli])
            note(f"Q {name} | sealog CLI ms", secs * 1e3)
            if where is None:
                sealog_answer = int(out.strip())
                sql = ("SELECT count(*) FROM {src} WHERE outcome = 'denied' AND time >= TIMESTAMPTZ "
                       "'2026-01-08 00:00:00+00' AND time < TIMESTAMPTZ '2026-01-15 00:00:00+00'")
            else:
                sealog_answer = [json.loads(l)["seq"] for l in out.splitlines()]
                sql = "SELECT seq FROM {src} WHERE " + where
            for label, src in [("DuckDB dir", lake), ("DuckDB file", one)]:
                started = time.perf_counter()
                rows = con.execute(sql.format(src=src)).fetchall()
                note(f"Q {name} | {label} ms", (time.perf_counter() - started) * 1e3)
                duck = rows[0][0] if where is None else [row[0] for row in rows]
                if duck != sealog_answer:
                    raise SystemExit(f"{name}: DuckDB ({label}) and sealog disagree")
            note(f"Q {name} | rows", sealog_answer if where is None else len(sealog_answer))
        con.close()

        for tls in (False, True):
            rdir = os.path.join(work, f"rsyslog-{r}-{tls}")
            os.makedirs(rdir)
            proc, port = rsyslog(rdir, tls)
            to = f"syslog+tls://localhost:{port}" if tls else f"syslog+tcp://127.0.0.1:{port}"
            cmd = [sealog, "--data-dir", store, "forward", "--to", to, "--until-caught-up",
                   "--name", f"bench-{r}-{tls}"]
            if tls:
                cmd += ["--ca", f"{TLS}/ca.pem"]
            # Timed until rsyslogd has written every line: the forwarder is
            # done when its writes are flushed, the receiver later.
            started = time.perf_counter()
            run(cmd)
            out_log = os.path.join(rdir, "out.log")
            lines = 0
            deadline = time.perf_counter() + 600
            while lines < n and time.perf_counter() < deadline:
                time.sleep(0.05)
                if os.path.exists(out_log):
                    with open(out_log, "rb") as f:
                        lines = f.read().count(b"\n")
            secs = time.perf_counter() - started
            note(f"forward {'TLS' if tls else 'TCP'} events/s", n / secs)
            proc.terminate()
            proc.wait()
            if lines != n:
                raise SystemExit(f"rsyslog wrote {lines} lines of {n}")
            shutil.rmtree(rdir)

    print(f"{n} events, {args.runs} runs, medians:")
    for name, values in results.items():
        print(f"  {name}: {statistics.median(values):,.1f}   (runs: {', '.join(f'{v:,.1f}' for v in values)})")


if __name__ == "__main__":
    sys.exit(main())
