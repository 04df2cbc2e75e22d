#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# SQLite on ext4 on a flurry volume (FUSE export + loop device, R=2).
# Two databases (WAL and rollback journal, synchronous=FULL) are filled
# with 6000 rows each in 12 transactions plus updates and deletes; the
# expected counts and sums are computed by the test itself. After umount,
# detach and a flurry-disk restart, PRAGMA integrity_check must say "ok",
# the figures must match and a full .dump must hash the same as before.
#   usage: sqlite.sh FLURRY_META FLURRY_TRACTSERVER FLURRY_DISK
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fl_init "$@"
fl_need_fuse_loop
fl_need_tools sqlite3 mkfs.ext4 sha256sum

fl_cluster_start
fl_volume db 128M 2
mkdir -p "$T/fuse" "$T/mnt"
fl_fuse_dir "$T/fuse"
fl_disk_start --volume db --fuse "$T/fuse"
fl_loop_attach "$T/fuse/db"
mkfs.ext4 -q -F "$LOOPDEV" >"$T/logs/mkfs.log" 2>&1 || { cat "$T/logs/mkfs.log"; fl_fail "mkfs.ext4"; }
fl_mount "$LOOPDEV" "$T/mnt"

ROWS_PER_TX=500 TXS=12
ROWS=$((ROWS_PER_TX * TXS))
# Expected after the updates (v += 1 where id % 7 == 0) and deletes (id % 10 == 3):
# rows id = 1..ROWS with v = id * 3.
expect=$(awk -v n=$ROWS 'BEGIN { c = 0; s = 0
  for (i = 1; i <= n; i++) { if (i % 10 == 3) continue; v = i * 3; if (i % 7 == 0) v++; c++; s += v }
  printf "%d|%d|%d\n", c, s, c * 300 }')

figures() { sqlite3 "$1" 'SELECT count(*), sum(v), sum(length(b)) FROM t;'; }

fl_step "create and fill two databases ($ROWS rows each, $TXS transactions)"
for mode in wal delete; do
  db=$T/mnt/$mode.db
  sqlite3 "$db" "PRAGMA journal_mode=$mode; PRAGMA synchronous=FULL;
    CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT UNIQUE, v INTEGER, b BLOB);" >/dev/null
  for ((tx = 0; tx < TXS; tx++)); do
    sqlite3 "$db" "PRAGMA synchronous=FULL; BEGIN;
      WITH RECURSIVE c(i) AS (SELECT $((tx * ROWS_PER_TX + 1)) UNION ALL SELECT i + 1 FROM c WHERE i < $(((tx + 1) * ROWS_PER_TX)))
      INSERT INTO t(id, k, v, b) SELECT i, 'key-' || i, i * 3, randomblob(300) FROM c;
      COMMIT;"
  done
  sqlite3 "$db" "PRAGMA synchronous=FULL; BEGIN; UPDATE t SET v = v + 1 WHERE id % 7 = 0; COMMIT;
    BEGIN; DELETE FROM t WHERE id % 10 = 3; COMMIT; CREATE INDEX tv ON t(v);"
  got=$(figures "$db")
  [[ $got == "$expect" ]] || fl_fail "$mode.db before remount: got $got, want $expect"
  sqlite3 "$db" .dump | sha256sum >"$T/$mode.dump.sha256"
  echo "$mode.db: count|sum(v)|bytes = $got"
done

fl_step "umount, detach, restart flurry-disk, remount"
fl_umount "$T/mnt"
fl_loop_detach
fl_disk_stop
fl_disk_start --volume db --fuse "$T/fuse"
fl_loop_attach "$T/fuse/db"
fl_mount "$LOOPDEV" "$T/mnt"

fl_step "integrity_check, figures and dump hash"
for mode in wal delete; do
  db=$T/mnt/$mode.db
  ic=$(sqlite3 "$db" 'PRAGMA integrity_check;')
  [[ $ic == ok ]] || fl_fail "$mode.db integrity_check: $ic"
  got=$(figures "$db")
  [[ $got == "$expect" ]] || fl_fail "$mode.db after remount: got $got, want $expect"
  sqlite3 "$db" .dump | sha256sum | cmp -s - "$T/$mode.dump.sha256" || fl_fail "$mode.db dump differs"
  [[ $(sqlite3 "$db" 'SELECT v FROM t WHERE k = '"'key-5998'"';') == $((5998 * 3)) ]] || fl_fail "$mode.db index lookup"
  echo "$mode.db: integrity ok, $got"
done

fl_umount "$T/mnt"
fl_loop_detach
fl_disk_stop
fl_pass
