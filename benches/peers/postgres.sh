#!/usr/bin/env bash
# Side-by-side write benchmark: sealog against PostgreSQL 15 holding the
# usual append-only audit table, on the same machine, disk and events.
#
#   benches/peers/postgres.sh [--events N] [--event-size BYTES] [--clients C]
#                             [--sealog PATH] [--workdir DIR] [--keep]
#
# See benches/peers/README.md for what is measured and how to read it.
set -euo pipefail

EVENTS=200000
EVENT_SIZE=300
CLIENTS=64
SEED=42
SEALOG=""
WORKDIR=""
KEEP=0

usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
}

die() {
    echo "postgres.sh: error: $*" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --events) EVENTS="${2:?--events needs a number}"; shift 2 ;;
        --event-size) EVENT_SIZE="${2:?--event-size needs a number}"; shift 2 ;;
        --clients) CLIENTS="${2:?--clients needs a number}"; shift 2 ;;
        --sealog) SEALOG="${2:?--sealog needs a path}"; shift 2 ;;
        --workdir) WORKDIR="${2:?--workdir needs a directory}"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
for n in "$EVENTS" "$EVENT_SIZE" "$CLIENTS"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "expected a positive whole number, got '$n'"
done
[ "$EVENTS" -ge "$CLIENTS" ] || die "--events ($EVENTS) must be at least --clients ($CLIENTS)"

REPO="$(cd "$(dirname "$0")/../.." && pwd)"

# --- tools -------------------------------------------------------------------
missing=()
for tool in initdb pg_ctl psql pgbench awk; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    die "missing on PATH: ${missing[*]}. Install PostgreSQL 15 (Debian: apt-get install postgresql-15 postgresql-client-15) and put its bin directory (e.g. /usr/lib/postgresql/15/bin) on PATH."
fi
pg_major="$(pg_ctl --version | awk '{print $NF}' | cut -d. -f1)"
[ "$pg_major" = "15" ] || echo "postgres.sh: note: pg_ctl is PostgreSQL $pg_major, not 15" >&2

if [ -z "$SEALOG" ]; then
    SEALOG="$REPO/target/release/sealog"
    if [ ! -x "$SEALOG" ]; then
        command -v cargo >/dev/null 2>&1 || die "no sealog binary at $SEALOG and no cargo to build it; pass --sealog PATH"
        echo "building sealog (release) ..." >&2
        (cd "$REPO" && cargo build --release -q -p sealog-cli) || die "cargo build --release -p sealog-cli failed"
    fi
fi
[ -x "$SEALOG" ] || die "--sealog $SEALOG is not an executable"

# PostgreSQL refuses to run as root: run the server as an unprivileged user.
RUN_PG=()
PG_OS_USER="$(id -un)"
if [ "$(id -u)" = "0" ]; then
    for candidate in postgres nobody; do
        if id -u "$candidate" >/dev/null 2>&1; then PG_OS_USER="$candidate"; break; fi
    done
    [ "$PG_OS_USER" != "root" ] || die "running as root and no 'postgres' or 'nobody' user to run the server as"
    command -v runuser >/dev/null 2>&1 || die "running as root needs runuser (util-linux) to start the server as $PG_OS_USER"
    RUN_PG=(runuser -u "$PG_OS_USER" --)
fi

# --- work directory and cleanup ----------------------------------------------
if [ -z "$WORKDIR" ]; then
    WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/sealog-peer-pg.XXXXXX")"
else
    mkdir -p "$WORKDIR"
fi
WORKDIR="$(cd "$WORKDIR" && pwd)"
PGDATA="$WORKDIR/pg/data"
PGSOCK="$WORKDIR/pg/sock"
PGLOG="$WORKDIR/pg/server.log"
STARTED=0

cleanup() {
    local status=$?
    if [ "$STARTED" = 1 ]; then
        "${RUN_PG[@]}" pg_ctl -D "$PGDATA" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [ "$KEEP" = 1 ]; then
        echo "kept $WORKDIR" >&2
    else
        rm -rf "$WORKDIR"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

chmod 755 "$WORKDIR"
mkdir -p "$WORKDIR/pg/sock" "$WORKDIR/sealog"
if [ ${#RUN_PG[@]} -gt 0 ]; then chown -R "$PG_OS_USER" "$WORKDIR/pg"; fi

# --- PostgreSQL ----------------------------------------------------------------
echo "== PostgreSQL: initdb and start (fsync=on, synchronous_commit=on) in $WORKDIR/pg" >&2
"${RUN_PG[@]}" initdb -D "$PGDATA" -U bench --auth=trust -E UTF8 --locale=C >"$WORKDIR/pg/initdb.log" 2>&1 \
    || { cat "$WORKDIR/pg/initdb.log" >&2; die "initdb failed"; }
"${RUN_PG[@]}" pg_ctl -D "$PGDATA" -l "$PGLOG" -w -t 60 -o "\
 -c listen_addresses='' -k $PGSOCK \
 -c fsync=on -c synchronous_commit=on -c full_page_writes=on -c wal_sync_method=fdatasync \
 -c max_connections=$((CLIENTS + 20)) -c shared_buffers=1GB -c max_wal_size=8GB \
 -c checkpoint_timeout=30min -c autovacuum=off" start >/dev/null \
    || { cat "$PGLOG" >&2; die "the PostgreSQL server did not start (log above)"; }
STARTED=1

export PGOPTIONS="-c client_min_messages=warning"
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h "$PGSOCK" -U bench -d postgres)
sql() { "${PSQL[@]}" -c "$1"; }
sql_value() { "${PSQL[@]}" -At -c "$1"; }

COLUMNS_PG="occurred_at, actor_type, actor_id, action, resource_type, resource_id, outcome, tenant, source_ip, user_agent, request_id, reason, metadata"

create_audit_table() {
    "${PSQL[@]}" <<'SQL'
DROP TABLE IF EXISTS audit_events;
CREATE TABLE audit_events (
    id            bigserial PRIMARY KEY,
    occurred_at   timestamptz NOT NULL,
    actor_type    text NOT NULL,
    actor_id      text NOT NULL,
    action        text NOT NULL,
    resource_type text NOT NULL,
    resource_id   text,
    outcome       text NOT NULL,
    tenant        text,
    source_ip     inet,
    user_agent    text,
    request_id    text,
    reason        text,
    metadata      jsonb
);
CREATE INDEX audit_events_time     ON audit_events (occurred_at);
CREATE INDEX audit_events_actor    ON audit_events (actor_id, occurred_at);
CREATE INDEX audit_events_action   ON audit_events (action, occurred_at);
CREATE INDEX audit_events_resource ON audit_events (resource_type, resource_id);
CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
CHECKPOINT;
SQL
}

# --- the events --------------------------------------------------------------
echo "== generating $EVENTS events of ~$EVENT_SIZE bytes (sealog bench --emit csv, seed $SEED)" >&2
"$SEALOG" bench --emit csv --events "$EVENTS" --event-size "$EVENT_SIZE" --seed "$SEED" >"$WORKDIR/events.csv"

# Typed rows, loaded once (not measured): the source of every PostgreSQL run.
"${PSQL[@]}" <<SQL
CREATE TABLE staging (
    time text, actor_type text, actor_id text, obo_type text, obo_id text, session_id text,
    action text, resource_type text, resource_id text, outcome text, tenant text,
    source_ip text, user_agent text, request_id text, reason text, metadata text
);
\copy staging FROM '$WORKDIR/events.csv' WITH (FORMAT csv, HEADER true)
CREATE TABLE events_pg AS
SELECT row_number() OVER () AS id,
       time::timestamptz AS occurred_at, actor_type, actor_id, action, resource_type,
       NULLIF(resource_id, '') AS resource_id, outcome, NULLIF(tenant, '') AS tenant,
       NULLIF(source_ip, '')::inet AS source_ip, NULLIF(user_agent, '') AS user_agent,
       NULLIF(request_id, '') AS request_id, NULLIF(reason, '') AS reason,
       NULLIF(metadata, '')::jsonb AS metadata
FROM staging;
ALTER TABLE events_pg ADD PRIMARY KEY (id);
DROP TABLE staging;
\copy (SELECT $COLUMNS_PG FROM events_pg ORDER BY id) TO '$WORKDIR/pg.csv' WITH (FORMAT csv)
SQL
loaded="$(sql_value "SELECT count(*) FROM events_pg")"
[ "$loaded" = "$EVENTS" ] || die "loaded $loaded of $EVENTS generated events into PostgreSQL"

# 100-row INSERT statements, one transaction each.
sql_value "SELECT 'INSERT INTO audit_events ($COLUMNS_PG) VALUES '
                  || string_agg(format('(%L,%L,%L,%L,%L,%L,%L,%L,%L,%L,%L,%L,%L)',
                         occurred_at, actor_type, actor_id, action, resource_type, resource_id,
                         outcome, tenant, source_ip, user_agent, request_id, reason, metadata),
                     ',' ORDER BY id) || ';'
           FROM events_pg GROUP BY (id - 1) / 100 ORDER BY (id - 1) / 100" >"$WORKDIR/insert100.sql"

# One generated row per transaction, from many clients.
cat >"$WORKDIR/insert1.pgbench" <<SQL
\set n random(1, $EVENTS)
INSERT INTO audit_events ($COLUMNS_PG) SELECT $COLUMNS_PG FROM events_pg WHERE id = :n;
SQL

now() { date +%s.%N; }
per_sec() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }

# Checks the table refuses changes, and reports its size per row.
check_append_only() {
    if sql "UPDATE audit_events SET outcome = 'success' WHERE id = 1" >/dev/null 2>&1; then
        die "the append-only trigger did not refuse an UPDATE"
    fi
    if sql "DELETE FROM audit_events WHERE id = 1" >/dev/null 2>&1; then
        die "the append-only trigger did not refuse a DELETE"
    fi
}
bytes_per_row() {
    sql_value "SELECT round(pg_total_relation_size('audit_events')::numeric / count(*), 1) FROM audit_events"
}

# (a) single-row commits from many clients
PER_CLIENT=$((EVENTS / CLIENTS))
ROWS_A=$((PER_CLIENT * CLIENTS))
echo "== PostgreSQL (a): $ROWS_A single-row commits from $CLIENTS clients (pgbench)" >&2
create_audit_table
pgbench -n -c "$CLIENTS" -j 2 -t "$PER_CLIENT" -f "$WORKDIR/insert1.pgbench" \
    -h "$PGSOCK" -U bench postgres >"$WORKDIR/pgbench.log" 2>&1 \
    || { cat "$WORKDIR/pgbench.log" >&2; die "pgbench failed"; }
PG_A="$(awk '/^tps = / { printf "%.0f", $3; exit }' "$WORKDIR/pgbench.log")"
[ -n "$PG_A" ] || { cat "$WORKDIR/pgbench.log" >&2; die "no tps in the pgbench output"; }
[ "$(sql_value "SELECT count(*) FROM audit_events")" = "$ROWS_A" ] || die "pgbench did not insert $ROWS_A rows"
check_append_only

# (b) 100-row INSERT statements from one client
echo "== PostgreSQL (b): $EVENTS rows in 100-row INSERTs, one client" >&2
create_audit_table
t0="$(now)"
"${PSQL[@]}" -f "$WORKDIR/insert100.sql" >/dev/null
t1="$(now)"
PG_B="$(per_sec "$EVENTS" "$t0" "$t1")"
[ "$(sql_value "SELECT count(*) FROM audit_events")" = "$EVENTS" ] || die "the 100-row INSERTs did not insert $EVENTS rows"

# (c) COPY
echo "== PostgreSQL (c): $EVENTS rows with COPY" >&2
create_audit_table
t0="$(now)"
"${PSQL[@]}" -c "\\copy audit_events ($COLUMNS_PG) FROM '$WORKDIR/pg.csv' WITH (FORMAT csv)"
t1="$(now)"
PG_C="$(per_sec "$EVENTS" "$t0" "$t1")"
[ "$(sql_value "SELECT count(*) FROM audit_events")" = "$EVENTS" ] || die "COPY did not insert $EVENTS rows"
check_append_only
sql "VACUUM ANALYZE audit_events" >/dev/null
PG_BYTES="$(bytes_per_row)"
PG_HEAP="$(sql_value "SELECT round(pg_table_size('audit_events')::numeric / count(*), 1) FROM audit_events")"
PG_INDEX="$(sql_value "SELECT round(pg_indexes_size('audit_events')::numeric / count(*), 1) FROM audit_events")"

"${RUN_PG[@]}" pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
STARTED=0

# --- sealog ------------------------------------------------------------------
run_sealog() { # batch threads [extra flags]
    "$SEALOG" bench --events "$1" --event-size "$EVENT_SIZE" --seed "$SEED" \
        --batch "$2" --threads "$3" --durability group --dir "$WORKDIR/sealog" --json "${@:4}"
}
field() { sed -E "s/.*\"$1\":([-0-9.e+]+).*/\1/"; }
num() { awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }

echo "== sealog (a): $ROWS_A events, batch 1, $CLIENTS threads" >&2
SL_A_JSON="$(run_sealog "$ROWS_A" 1 "$CLIENTS")"
echo "== sealog (b): $EVENTS events, batch 100, 1 thread" >&2
SL_B_JSON="$(run_sealog "$EVENTS" 100 1)"
echo "== sealog (c): $EVENTS events, batch 1000, 1 thread" >&2
SL_C_JSON="$(run_sealog "$EVENTS" 1000 1 --keep)"
SL_A="$(echo "$SL_A_JSON" | field events_per_sec)"
SL_B="$(echo "$SL_B_JSON" | field events_per_sec)"
SL_C="$(echo "$SL_C_JSON" | field events_per_sec)"
SL_DIR="$(echo "$SL_C_JSON" | sed -E 's/.*"dir":"([^"]*)".*/\1/')"
SL_STATS="$("$SEALOG" stats --data-dir "$SL_DIR" --json | tr -d ' \n')"
SL_USED="$(echo "$SL_STATS" | sed -E 's/.*"segments_in_use":([0-9]+).*/\1/')"
SL_LEAVES="$(echo "$SL_STATS" | sed -E 's/.*"leaf_file":\{"files":[0-9]+,"bytes":([0-9]+).*/\1/')"
SL_EVENTS="$(echo "$SL_STATS" | sed -E 's/.*"events":([0-9]+).*/\1/')"
SL_BYTES="$(awk -v u="$SL_USED" -v l="$SL_LEAVES" -v n="$SL_EVENTS" 'BEGIN { printf "%.1f", (u + l) / n }')"
SL_SEG_BYTES="$(awk -v u="$SL_USED" -v n="$SL_EVENTS" 'BEGIN { printf "%.1f", u / n }')"
rm -rf "$SL_DIR"

# --- report ------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
row() { printf '%-40s %15s %15s %10s\n' "$1" "$2" "$3" "$4"; }
echo
echo "sealog vs PostgreSQL $pg_major: $EVENTS audit events of ~$EVENT_SIZE bytes, same events, same disk"
echo "(PostgreSQL: fsync=on, synchronous_commit=on, append-only trigger, 4 indexes + primary key;"
echo " sealog: durability group, every acknowledged event fdatasync'ed)"
echo
row "write path" "PG rows/s" "sealog ev/s" "sealog/PG"
row "(a) 1 row per commit, $CLIENTS clients" "$PG_A" "$(printf '%.0f' "$SL_A")" "$(ratio "$SL_A" "$PG_A")"
row "(b) 100 rows per commit (INSERT / batch)" "$PG_B" "$(printf '%.0f' "$SL_B")" "$(ratio "$SL_B" "$PG_B")"
row "(c) COPY / batches of 1000" "$PG_C" "$(printf '%.0f' "$SL_C")" "$(ratio "$SL_C" "$PG_C")"
echo
echo "on-disk bytes per row: PostgreSQL table+indexes $PG_BYTES (heap $PG_HEAP, indexes $PG_INDEX; WAL not counted)"
echo "                       sealog segments+leaf file $SL_BYTES (segments $SL_SEG_BYTES; indexes are in memory)"
echo "                       ratio sealog/PostgreSQL $(ratio "$SL_BYTES" "$PG_BYTES")"
echo
echo "sealog append call latency p50/p99: (a) $(num "$(echo "$SL_A_JSON" | field p50_us)")/$(num "$(echo "$SL_A_JSON" | field p99_us)") us," \
     "(b) $(num "$(echo "$SL_B_JSON" | field p50_us)")/$(num "$(echo "$SL_B_JSON" | field p99_us)") us," \
     "(c) $(num "$(echo "$SL_C_JSON" | field p50_us)")/$(num "$(echo "$SL_C_JSON" | field p99_us)") us"
echo "sealog events per fdatasync: (a) $(num "$(echo "$SL_A_JSON" | field events_per_fsync)")," \
     "(b) $(num "$(echo "$SL_B_JSON" | field events_per_fsync)"), (c) $(num "$(echo "$SL_C_JSON" | field events_per_fsync)")"
