#!/usr/bin/env python3
"""Command-line queries, builds side by side: the rows of docs/benchmarks.md.

Runs each query of the table ("any CLI query <= 50 ms end to end") with
every build given, the builds alternating run by run so that the machine's
load moves both alike, and prints the median wall time of each build per
round, as the table's cells: the time of the whole `sealog query` process,
measured from outside (`time.perf_counter()` around `subprocess.run`).

The request ids are those of the store `query_bench generate DIR 100000000`
writes (its generator is seeded): one of the oldest records, and one no
record has. Usage:

    benches/cli/rows.py --data-dir /data/q100m OLD_SEALOG NEW_SEALOG
    benches/cli/rows.py --data-dir /data/q100m --runs 9 --rounds 3 --cold A B

--data-dir may be given more than once: every build then runs on every
store (the same store compressed and not, say: `sealog compress`).

With --cold, every file of the store is evicted from the page cache
(posix_fadvise DONTNEED) before each run, and each query runs --cold-runs
times per build instead.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

QUERIES = [
    ("`--request-id <one of the oldest>`", ["--request-id", "55b871711a2012f4"]),
    ("`--request-id <absent>`", ["--request-id", "0123456789abcdef"]),
    ("`--actor user:u-000042` (no match)", ["--actor", "user:u-000042"]),
    ("`--actor user:u00042 --limit 10`", ["--actor", "user:u00042", "--limit", "10"]),
    ("`--outcome denied --count`", ["--outcome", "denied", "--count"]),
    (
        "`--action auth.nonexistent --limit 10`",
        ["--action", "auth.nonexistent", "--limit", "10"],
    ),
    ("`--actor user:u00042 --count`", ["--actor", "user:u00042", "--count"]),
    ("`--action user.update --count`", ["--action", "user.update", "--count"]),
]


def evict(data_dir):
    """Drops every file of the store from the page cache."""
    for root, _, files in os.walk(data_dir):
        for name in files:
            try:
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def run_once(binary, data_dir, args):
    """Wall time of one `sealog query`, in ms; exits if the query fails."""
    started = time.perf_counter()
    done = subprocess.run(
        [binary, "query", "--data-dir", data_dir, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    elapsed = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        sys.exit(f"{binary} query {' '.join(args)} failed: {done.stderr.decode().strip()}")
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, action="append")
    parser.add_argument("--runs", type=int, default=9, help="runs per build and round (warm)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="evict the store before each run")
    parser.add_argument("--cold-runs", type=int, default=2)
    parser.add_argument("builds", nargs="+", help="sealog binaries to compare")
    opts = parser.parse_args()
    runs = opts.cold_runs if opts.cold else opts.runs
    columns = [(b, d) for b in opts.builds for d in opts.data_dir]
    if not opts.cold:
        # One run of each query first: the store's indexes into memory.
        for d in opts.data_dir:
            for _, args in QUERIES:
                run_once(opts.builds[0], d, args)
    names = [
        os.path.basename(b) + (f" on {os.path.basename(d)}" if len(opts.data_dir) > 1 else "")
        for b, d in columns
    ]
    print(f"| query (rounds {', '.join(str(r + 1) for r in range(opts.rounds))}), ms | "
          + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for label, args in QUERIES:
        cells = {c: [] for c in columns}
        for _ in range(opts.rounds):
            times = {c: [] for c in columns}
            for _ in range(runs):
                for c in columns:
                    if opts.cold:
                        evict(c[1])
                    times[c].append(run_once(c[0], c[1], args))
            for c in columns:
                cells[c].append(statistics.median(times[c]))
        row = " | ".join(", ".join(f"{v:.1f}" for v in cells[c]) for c in columns)
        print(f"| {label} | {row} |", flush=True)


if __name__ == "__main__":
    main()
