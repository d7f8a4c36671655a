#!/usr/bin/env python3
"""Archive benchmarks: what copying a store off the host costs, side by side.

1. Archive throughput against the local disk's read bandwidth, in the same
   run: the page cache is dropped before each, the disk's figure is reading
   every file `sealog archive` uploads (segments and their sidecars) with
   `cat`, the archive's is `sealog archive --once` of the same store to a
   file:// target on the same disk and to moto (an S3 API server on
   loopback); and to file:// with `--parquet` (the Parquet copies' cost,
   and their bytes per event).
2. HTTP ingest with archiving on and off: `sealog serve` with and without
   `--archive s3://...` (moto), the load generator of the benchmarks
   (16 clients, NDJSON batches of 1,000), small segments so that several
   seal and upload during the run; alternating, a fresh store per run.
   moto runs on the same machine, where a real object store would not:
   `--moto-nice 19` keeps most of its CPU from the server's, and
   `--moto-idle` (SCHED_IDLE) all of it, as a remote store would. Each
   "on" run counts only once every sealed record is archived; the time
   that took after the load ended is printed.
3. A query that reaches archived segments: after `archive --retain-local
   0s` removed the local copies, `sealog query` over the oldest day of the
   store, cold (archive cache emptied, page cache dropped: every segment
   is fetched from moto) and cached (the same query again).

Needs a release build (cargo build --release -p sealog-cli -p sealog-benches),
moto in target/py-venv (`.ci/run` installs it) and root (to drop the page
cache through /proc/sys/vm/drop_caches; without it the "cold" figures are
warm and the script says so). Run from anywhere:

    target/py-venv/bin/python benches/archive/bench.py --events 2000000 --runs 3

Prints one line per measurement and a summary of medians.
"""

import argparse
import atexit
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV = os.path.join(ROOT, "target/py-venv")
KEY, SECRET = "sealog-bench", "sealog-bench-secret"


def drop_caches():
    subprocess.run(["sync"], check=True)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    def __init__(self, workdir, nice=0, idle=False):
        self.log = os.path.join(workdir, "moto.log")
        for _ in range(5):
            self.port = free_port()
            out = open(self.log, "w")
            # chrt --idle: SCHED_IDLE, moto runs only on CPU nothing else wants.
            sched = ["chrt", "--idle", "0"] if idle else []
            self.proc = subprocess.Popen(
                sched + ["nice", "-n", str(nice), os.path.join(VENV, "bin/moto_server"),
                         "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            # Stopped at exit whatever ends the script (a failed command's
            # sys.exit included), so that no moto outlives it.
            atexit.register(self.proc.kill)
            want = f"Running on http://127.0.0.1:{self.port}"
            deadline = time.time() + 60
            while time.time() < deadline:
                if want in open(self.log).read():
                    return
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
            self.proc.kill()
        sys.exit("moto_server did not start: " + open(self.log).read())

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def env(self):
        e = dict(os.environ)
        e.update({
            "AWS_ENDPOINT_URL": self.endpoint, "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_REGION": "us-east-1",
        })
        return e

    def create_bucket(self, name):
        import boto3
        s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                          aws_access_key_id=KEY, aws_secret_access_key=SECRET)
        s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def run(cmd, env=None, **kw):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
    return p.stdout


def archived_files(store):
    """The segment files `sealog archive` copies: each sealed segment (a
    `.seg` with its `.idx`) and its index; not the open segment or spares."""
    seg = os.path.join(store, "segments")
    names = set(os.listdir(seg))
    sealed = sorted(n for n in names if n.endswith(".seg") and n[:-4] + ".idx" in names)
    return [os.path.join(seg, n) for s in sealed for n in (s, s[:-4] + ".idx")]


def read_bandwidth(files):
    drop_caches()
    total = sum(os.path.getsize(f) for f in files)
    t = time.perf_counter()
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(1 << 20):
                pass
    return total / 1e6 / (time.perf_counter() - t)


def archive_round(sealog, store, url, env, extra=()):
    drop_caches()
    out = run([sealog, "--data-dir", store, "archive", "--to", url, "--once", "--json", *extra],
              env=env)
    rounds = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    r = rounds[0]
    return r["mb_per_sec"], r["bytes_written"], r


def serve_ingest(args, moto, archive_url, workdir, tag):
    d = os.path.join(workdir, f"serve-{tag}")
    shutil.rmtree(d, ignore_errors=True)
    run([args.sealog, "--data-dir", d, "init"], env=moto.env())
    token = run([args.sealog, "--data-dir", d, "token", "create", "--name", "bench",
                 "--scopes", "ingest,query,admin"], env=moto.env()).strip().splitlines()[-1]
    # The server signs with the log's key (SEALOG_SIGNING_KEY, set in main):
    # each archive round ships a checkpoint signed with it.
    port = free_port()
    cmd = [args.sealog, "--data-dir", d, "serve", "--listen", f"127.0.0.1:{port}",
           "--segment-size", args.serve_segment_size]
    if archive_url:
        cmd += ["--archive", archive_url]
    srv = subprocess.Popen(cmd, env=moto.env(), stdout=subprocess.PIPE,
                           stderr=open(d + ".err", "w"), text=True)
    line = srv.stdout.readline()
    if "listening" not in line:
        srv.kill()
        sys.exit(f"serve did not start: {line}{open(d + '.err').read()}")
    env = dict(moto.env())
    env["SEALOG_TOKEN"] = token
    out = run([args.load, "--http", f"http://127.0.0.1:{port}", "--clients", "16",
               "--batch", "1000", "--events", str(args.serve_events), "--queries", "0",
               "--query-clients", "0", "--json"], env=env)
    rate = json.loads(out.strip().splitlines()[-1])["events_per_sec"]
    caught_up = None
    if archive_url:
        # The run counts only if the archive really followed: wait until
        # every sealed record is archived, and say how long that took after
        # the load ended (the archiver runs at a lower priority and may
        # fall behind while ingest saturates the machine).
        t = time.perf_counter()
        while True:
            metrics = metrics_of(port, token)
            lag = metrics.get("sealog_archive_lag_records", -1)
            if metrics.get("sealog_archive_rounds_total", 0) > 0 and lag == 0:
                caught_up = time.perf_counter() - t
                break
            if time.perf_counter() - t > 300:
                srv.kill()
                sys.exit(f"the archive did not catch up in 300 s (lag {lag} records, "
                         f"{metrics.get('sealog_archive_failures_total')} failures): "
                         f"{open(d + '.err').read()[-2000:]}")
            time.sleep(0.1)
    srv.send_signal(signal.SIGTERM)
    srv.wait(timeout=120)
    shutil.rmtree(d, ignore_errors=True)
    return rate, caught_up


def metrics_of(port, token):
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                 headers={"Authorization": f"Bearer {token}"})
    out = {}
    for line in urllib.request.urlopen(req, timeout=30).read().decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


def timed(cmd, env):
    t = time.perf_counter()
    out = run(cmd, env=env)
    return time.perf_counter() - t, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--serve-events", type=int, default=1_000_000)
    ap.add_argument("--serve-segment-size", default="16MiB")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sealog", default=os.path.join(ROOT, "target/release/sealog"))
    ap.add_argument("--load", default=os.path.join(ROOT, "target/release/load"))
    ap.add_argument("--workdir")
    ap.add_argument("--skip", default="", help="comma list of: bandwidth,ingest,query")
    ap.add_argument("--moto-idle", action="store_true",
                    help="run moto under SCHED_IDLE (chrt --idle): it then takes no CPU the "
                         "server wants, as a remote object store would not")
    ap.add_argument("--moto-nice", type=int, default=0,
                    help="run moto at this nice value: moto stands in for a remote service, "
                         "and on a small machine its CPU is otherwise taken from the server")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    workdir = args.workdir or tempfile.mkdtemp(prefix="sealog-archive-bench.")
    os.makedirs(workdir, exist_ok=True)
    cold = drop_caches()
    if not cold:
        print("note: cannot drop the page cache (not root): 'cold' figures are warm")
    moto = Moto(workdir, args.moto_nice, args.moto_idle)
    key = os.path.join(workdir, "log")
    if not os.path.exists(key + ".key"):
        run([args.sealog, "keygen", "--name", "bench.sealog.example/archive", "--out", key])
    # Every writer and archiver signs with the log's key (an archive without
    # a signed checkpoint is refused).
    os.environ["SEALOG_SIGNING_KEY"] = key + ".key"
    env = moto.env()
    results = {}
    try:
        store = os.path.join(workdir, "store")
        if not os.path.isdir(store):
            bench = os.path.join(workdir, "bench")
            os.makedirs(bench, exist_ok=True)
            run([args.sealog, "bench", "--events", str(args.events), "--batch", "1000",
                 "--threads", "2", "--dir", bench, "--keep", "--segment-size", "16MiB"])
            (made,) = os.listdir(bench)
            os.rename(os.path.join(bench, made), store)
        files = archived_files(store)
        total = sum(os.path.getsize(f) for f in files)
        print(f"store: {args.events} events, {len(files) // 2} sealed segments, {total / 1e6:.1f} MB with their indexes")

        if "bandwidth" not in skip:
            for i in range(args.runs):
                disk = read_bandwidth(files)
                f_mb, f_bytes, f = archive_round(args.sealog, store, f"file://{workdir}/file-{i}", env)
                # The same with the Parquet copies: the rate is of the
                # store's bytes (segments and sidecars) per second, so
                # the two compare; the Parquet bytes are counted apart.
                pq_dir = f"{workdir}/file-parquet-{i}"
                _, pq_all, pq = archive_round(args.sealog, store, f"file://{pq_dir}", env,
                                              ("--parquet",))
                pq_bytes = sum(os.path.getsize(os.path.join(d, n))
                               for d, _, ns in os.walk(os.path.join(pq_dir, "parquet")) for n in ns)
                pq_mb = (pq_all - pq_bytes) / 1e6 / pq["elapsed_secs"]
                f_store_mb = f_bytes / 1e6 / f["elapsed_secs"]
                shutil.rmtree(pq_dir, ignore_errors=True)
                moto.create_bucket(f"bench-{i}")
                s_mb, s_bytes, _ = archive_round(args.sealog, store, f"s3://bench-{i}/a", env)
                shutil.rmtree(f"{workdir}/file-{i}", ignore_errors=True)
                print(f"round {i + 1}: disk read {disk:.0f} MB/s; archive file:// {f_mb:.0f} MB/s "
                      f"({f_bytes / 1e6:.0f} MB); archive s3 (moto) {s_mb:.0f} MB/s ({s_bytes / 1e6:.0f} MB); "
                      f"file:// with --parquet {pq_mb:.0f} MB/s of the store's bytes "
                      f"(without {f_store_mb:.0f}), Parquet {pq_bytes / 1e6:.0f} MB, "
                      f"{pq_bytes / pq['tree_size']:.1f} B/event")
                for k, v in (("disk", disk), ("file", f_mb), ("s3", s_mb), ("file_parquet", pq_mb),
                             ("parquet_bytes_per_event", pq_bytes / pq["tree_size"])):
                    results.setdefault(k, []).append(v)

        if "ingest" not in skip:
            moto.create_bucket("serve")
            for i in range(args.runs):
                # Which goes first alternates, so that a drift of the
                # machine over a round weighs on both alike.
                if i % 2 == 0:
                    off, _ = serve_ingest(args, moto, None, workdir, f"off-{i}")
                    on, caught_up = serve_ingest(args, moto, f"s3://serve/r{i}", workdir, f"on-{i}")
                else:
                    on, caught_up = serve_ingest(args, moto, f"s3://serve/r{i}", workdir, f"on-{i}")
                    off, _ = serve_ingest(args, moto, None, workdir, f"off-{i}")
                print(f"round {i + 1}: ingest archiving off {off:,.0f} events/s, on {on:,.0f} "
                      f"events/s ({(1 - on / off) * 100:+.1f}% cost); archive caught up "
                      f"{caught_up:.1f} s after the load ended")
                results.setdefault("ingest_off", []).append(off)
                results.setdefault("ingest_on", []).append(on)
                results.setdefault("ingest_cost_pct", []).append((1 - on / off) * 100)
                results.setdefault("archive_caught_up_secs", []).append(caught_up)

        if "query" not in skip:
            moto.create_bucket("query")
            url = "s3://query/q"
            run([args.sealog, "--data-dir", store, "archive", "--to", url, "--once",
                 "--retain-local", "0s"], env=env)
            left = [f for f in os.listdir(os.path.join(store, "segments")) if f.endswith(".seg")]
            oldest = run([args.sealog, "--data-dir", store, "query", "--oldest-first", "--limit", "1"],
                         env=env)
            t0 = json.loads(oldest.splitlines()[0])["time"][:10]
            q = [args.sealog, "--data-dir", store, "query", "--from", t0 + "T00:00:00Z",
                 "--to", t0 + "T23:59:59Z", "--action", "*.delete", "--outcome", "denied",
                 "--count"]
            cache = os.path.join(store, "archive-cache")
            for i in range(args.runs):
                shutil.rmtree(cache, ignore_errors=True)
                drop_caches()
                c, out = timed(q, env)
                w, out2 = timed(q, env)
                assert out == out2, (out, out2)
                print(f"round {i + 1}: query over the oldest day ({out.strip()} events), "
                      f"{len(left)} segments local: cold {c * 1000:.0f} ms, cached {w * 1000:.0f} ms")
                results.setdefault("query_cold_ms", []).append(c * 1000)
                results.setdefault("query_cached_ms", []).append(w * 1000)
    finally:
        moto.stop()
    print("medians:", json.dumps({k: round(statistics.median(v), 1) for k, v in results.items()}))
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
