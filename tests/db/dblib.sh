# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
#
# dblib.sh: helpers shared by the database crash tests (tests/db), on top of
# tests/disk/lib.sh (cluster, flurry-disk, loop devices, cleanup).
#
# Callers: source tests/disk/lib.sh and this file, fl_init META TS DISK,
# then `trap db_cleanup EXIT`.
#   db_start_disk VOL          flurry-disk --volume VOL --fuse $T/fuse-VOL; waits
#                              for "ready". Returns 3 if the mode is not implemented.
#   db_attach VOL              losetup $T/fuse-VOL/VOL (sets LOOPDEV)
#   fl_crash_cleanup MNT FUSE  after kill -9 of flurry-disk: umount -l the ext4
#                              mount, losetup -d, lazily unmount the dead FUSE mount
#   fl_bounded SECS OUT CMD... CMD with a deadline; past it the device is wedged:
#                              kill -9 flurry-disk and fail
#   fl_wait_dead PID           until PID has exited (zombie counts), <= 60 s
#   db_fsck                    e2fsck journal replay, then fsck.ext4 -fn must be clean
#   pg_* (PostgreSQL 15, run as user postgres with setpriv; data dir, socket
#   dir and logs under $T): pg_initdb DIR, pg_start DIR, pg_stop, pg_kill,
#   pg_psql SQL..., PG_SOCK, PG_PID.
#   db_cleanup                 kills PostgreSQL and unmounts what these
#                              helpers mounted, then runs lib.sh's fl_cleanup.

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_PID=
PG_DATA=
PG_RUNS=0
DB_MOUNTS=()

db_need_pg() {
  [[ -x $PG_BIN/postgres && -x $PG_BIN/initdb && -x $PG_BIN/pgbench && -x $PG_BIN/pg_amcheck ]] \
    || fl_skip "PostgreSQL 15 not installed in $PG_BIN"
  id postgres >/dev/null 2>&1 || fl_skip "no user postgres"
  fl_need_tools setpriv psql
}

db_cleanup() {
  local rc=$? d
  set +e
  pg_kill
  for ((i = ${#DB_MOUNTS[@]} - 1; i >= 0; i--)); do
    fl_is_mounted "${DB_MOUNTS[i]}" && { umount "${DB_MOUNTS[i]}" 2>/dev/null || umount -l "${DB_MOUNTS[i]}"; }
  done
  for d in "$T"/fuse-*; do
    fl_is_mounted "$d" && umount -l "$d"
  done
  (exit $rc)
  fl_cleanup
}

db_mount() {
  fl_bounded 60 "$T/logs/mount.out" mount "$1" "$2"
  DB_MOUNTS+=("$2")
}

# db_start_disk VOL: flurry-disk serving VOL as the FUSE file $T/fuse-VOL/VOL.
db_start_disk() {
  local vol=$1 i log
  FL_DISK_RUNS=$((FL_DISK_RUNS + 1))
  log="disk-$vol.$FL_DISK_RUNS"
  rm -f "$T/disk.port"
  mkdir -p "$T/fuse-$vol"
  fl_fuse_dir "$T/fuse-$vol"
  fl_spawn "$log" "$FL_DISK_BIN" --meta "127.0.0.1:$META_PORT" --listen 127.0.0.1:0 \
    --port-file "$T/disk.port" --volume "$vol" --fuse "$T/fuse-$vol"
  DISK_PID=$FL_LAST_PID
  for ((i = 0; i < 600; i++)); do
    grep -qs '^flurry-disk: ready' "$T/logs/$log.log" && return 0
    if ! fl_alive "$DISK_PID"; then
      fl_wait "$DISK_PID" || true
      DISK_PID=
      grep -qs 'does not implement' "$T/logs/$log.log" && return 3
      cat "$T/logs/$log.log"
      fl_fail "flurry-disk exited during start-up"
    fi
    sleep 0.1
  done
  fl_fail "flurry-disk not ready after 60 s (see $log.log)"
}

db_attach() { fl_loop_attach "$T/fuse-$1/$1" >/dev/null; }

# db_settle VOL MNT: makes the freshly made filesystem and database durable
# before the first kill. fast-ack and log acknowledge fsync before the data
# is durable (prefix consistency), so a kill a few seconds after mkfs may
# legitimately leave no filesystem at all; a clean stop of flurry-disk
# (SIGTERM quiesces every engine: everything acknowledged becomes durable)
# and a restart make the kills test the database, not mkfs.
db_settle() {
  local vol=$1 mnt=$2
  fl_umount "$mnt"
  fl_loop_detach
  fl_disk_stop
  db_start_disk "$vol"
  db_attach "$vol"
  db_mount "$LOOPDEV" "$mnt"
}

# db_kill_disk: the crash. SIGKILL flurry-disk and reap it.
db_kill_disk() {
  kill -KILL "$DISK_PID"
  fl_wait "$DISK_PID" || true
  DISK_PID=
}

# db_fsck TAG: replay the ext4 journal (e2fsck -E journal_only), then a full
# read-only check must be clean. Prints the fsck output and fails otherwise.
db_fsck() {
  local tag=$1
  fl_bounded 120 "$T/logs/replay-$tag.log" e2fsck -y -E journal_only "$LOOPDEV" || true
  if ! fl_bounded 300 "$T/logs/fsck-$tag.log" fsck.ext4 -fn "$LOOPDEV"; then
    cat "$T/logs/fsck-$tag.log"
    return 1
  fi
}

# --- PostgreSQL -------------------------------------------------------------

PG_SOCK=

as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

# pg_initdb DIR: a new cluster in DIR (checksums on, trust auth on the
# private unix socket only).
pg_initdb() {
  local dir=$1
  PG_SOCK=$T/pgsock
  mkdir -p "$PG_SOCK" "$dir"
  chmod 755 "$T"
  chown postgres: "$PG_SOCK" "$dir"
  chmod 700 "$dir"
  fl_bounded 300 "$T/logs/initdb.log" as_pg "$PG_BIN/initdb" -D "$dir" -U postgres --auth=trust -k -E UTF8 \
    --locale=C || { cat "$T/logs/initdb.log"; fl_fail "initdb"; }
  cat >>"$dir/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$PG_SOCK'
port = 5432
shared_buffers = 32MB
max_wal_size = 64MB
checkpoint_timeout = 30s
fsync = on
synchronous_commit = on
full_page_writes = on
log_min_messages = warning
EOF
  # initdb fsyncs its files; this append must be made durable too (ext4
  # updates i_size of an append inside an allocated block without ordering
  # the data, so an unsynced append can read back as zeros after a crash).
  sync "$dir/postgresql.conf"
}

# pg_start DIR: start the postmaster (recovering from its WAL if needed) and
# wait until it accepts connections (<= 300 s).
pg_start() {
  PG_DATA=$1
  PG_RUNS=$((PG_RUNS + 1))
  local log=$T/logs/postgres.$PG_RUNS.log i
  # setpriv execs postgres: $! is the postmaster itself.
  setpriv --reuid=postgres --regid=postgres --init-groups "$PG_BIN/postgres" -D "$PG_DATA" >"$log" 2>&1 &
  PG_PID=$!
  for ((i = 0; i < 3000; i++)); do
    "$PG_BIN/pg_isready" -q -h "$PG_SOCK" -p 5432 && return 0
    if ! fl_alive "$PG_PID"; then
      wait "$PG_PID" || true
      PG_PID=
      tail -n 30 "$log"
      return 1
    fi
    sleep 0.1
  done
  tail -n 30 "$log"
  return 1
}

pg_log() { echo "$T/logs/postgres.$PG_RUNS.log"; }

# pg_stop: fast shutdown (a checkpoint), must exit 0 within 120 s.
pg_stop() {
  [[ -n $PG_PID ]] || return 0
  local rc=0
  fl_stop_pid "$PG_PID" 120 || rc=$?
  PG_PID=
  return $rc
}

# pg_kill: SIGKILL the postmaster and every child (stopped first, so that it
# forks no new ones), then wait until all are gone. PostgreSQL children call
# setsid(), so a process-group kill would miss them.
pg_kill() {
  [[ -n $PG_PID ]] || return 0
  local kids p
  if fl_alive "$PG_PID"; then
    kill -STOP "$PG_PID" 2>/dev/null || true
    kids=$(db_descendants "$PG_PID")
    # shellcheck disable=SC2086
    kill -KILL "$PG_PID" $kids 2>/dev/null || true
    for p in $kids; do fl_wait_dead "$p" || echo "postgres child $p did not die" >&2; done
  fi
  wait "$PG_PID" 2>/dev/null || true
  PG_PID=
}

# db_descendants PID: every descendant of PID (children, grandchildren...).
db_descendants() {
  ps -e -o pid=,ppid= | awk -v root="$1" '
    { parent[$1] = $2 }
    END { for (p in parent) { q = parent[p]; while (q != "" && q != 0 && q != 1) {
            if (q == root) { print p; break } q = parent[q] } } }'
}

pg_psql() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p 5432 -U postgres "$@"; }
