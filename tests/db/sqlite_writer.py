#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""SQLite (WAL mode, synchronous=FULL) writer and verifier for the crash tests.

  sqlite_writer.py init DB
      creates the schema (journal_mode=WAL).
  sqlite_writer.py run DB ROUND ACKFILE [--seed N]
      commits transactions until killed or an error: each inserts row
      (ROUND, i) into `acked` with a random blob, sets counts[ROUND] = i in
      the same transaction, and churns the `churn` table (updates, inserts,
      deletes of 0.5-6 KiB blobs, so that pages are rewritten and the WAL is
      checkpointed often: wal_autocheckpoint=100). Only after COMMIT returned
      is i appended (and flushed) to ACKFILE.
  sqlite_writer.py verify DB ROUND ACKFILE STATEFILE --mode MODE
      opens DB (WAL recovery), then fails (exit 1) unless:
        PRAGMA integrity_check = ok, and PRAGMA foreign_key_check is empty;
        round ROUND's rows are 1..m with no hole and counts[ROUND] = m;
        every earlier round in STATEFILE (JSON, round -> rows kept after its
        own recovery) still has exactly those rows;
        the churn table's row count and blob sum match its `churn_total` row;
        MODE write-through: m >= every id in ACKFILE (no commit lost).
      Prints "acked N present M lost L" and records round ROUND in STATEFILE.
"""
import argparse
import json
import os
import random
import sqlite3
import sys


def connect(path):
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA wal_autocheckpoint=100")
    return db


def init(args):
    db = connect(args.db)
    mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    if mode != "wal":
        sys.exit(f"journal_mode is {mode}, not wal")
    db.executescript("""
        BEGIN;
        CREATE TABLE acked(round INTEGER, id INTEGER, b BLOB, PRIMARY KEY(round, id));
        CREATE TABLE counts(round INTEGER PRIMARY KEY, n INTEGER);
        CREATE TABLE churn(k INTEGER PRIMARY KEY, v BLOB, len INTEGER);
        CREATE INDEX churn_len ON churn(len);
        CREATE TABLE churn_total(one INTEGER PRIMARY KEY, rows INTEGER, bytes INTEGER);
        INSERT INTO churn_total VALUES (1, 0, 0);
        COMMIT;
    """)
    db.close()


def run(args):
    rnd = random.Random(args.seed)
    db = connect(args.db)
    ack = open(args.ackfile, "w")
    i = 0
    while True:
        i += 1
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO acked VALUES (?, ?, randomblob(?))", (args.round, i, rnd.randint(16, 2048)))
        db.execute("INSERT OR REPLACE INTO counts VALUES (?, ?)", (args.round, i))
        for _ in range(rnd.randint(1, 4)):
            k = rnd.randint(1, 2000)
            old = db.execute("SELECT len FROM churn WHERE k = ?", (k,)).fetchone()
            if old is not None and rnd.random() < 0.3:
                db.execute("DELETE FROM churn WHERE k = ?", (k,))
                db.execute("UPDATE churn_total SET rows = rows - 1, bytes = bytes - ?", (old[0],))
            else:
                n = rnd.randint(512, 6144)
                db.execute("INSERT OR REPLACE INTO churn VALUES (?, randomblob(?), ?)", (k, n, n))
                if old is None:
                    db.execute("UPDATE churn_total SET rows = rows + 1, bytes = bytes + ?", (n,))
                else:
                    db.execute("UPDATE churn_total SET bytes = bytes + ?", (n - old[0],))
        db.execute("COMMIT")
        ack.write(f"{i}\n")
        ack.flush()


def verify(args):
    db = connect(args.db)
    problems = []
    ic = [r[0] for r in db.execute("PRAGMA integrity_check")]
    if ic != ["ok"]:
        problems.append("integrity_check: " + "; ".join(ic[:10]))
    n, m = db.execute("SELECT count(*), coalesce(max(id), 0) FROM acked WHERE round = ?", (args.round,)).fetchone()
    cnt = db.execute("SELECT n FROM counts WHERE round = ?", (args.round,)).fetchone()
    cnt = cnt[0] if cnt else 0
    if n != m:
        problems.append(f"round {args.round}: {n} rows but max id {m} (a hole)")
    if cnt != m:
        problems.append(f"round {args.round}: counts says {cnt}, rows say {m} (a torn transaction)")
    state = {}
    if os.path.exists(args.statefile):
        with open(args.statefile) as f:
            state = json.load(f)
    for r, want in state.items():
        got = db.execute("SELECT count(*) FROM acked WHERE round = ?", (int(r),)).fetchone()[0]
        if got != want:
            problems.append(f"round {r} had {want} rows after its recovery, now {got}")
    rows, nbytes = db.execute("SELECT count(*), coalesce(sum(len), 0) FROM churn").fetchone()
    trows, tbytes = db.execute("SELECT rows, bytes FROM churn_total").fetchone()
    if (rows, nbytes) != (trows, tbytes):
        problems.append(f"churn has {rows} rows / {nbytes} bytes, churn_total says {trows} / {tbytes}")
    bad_len = db.execute("SELECT count(*) FROM churn WHERE length(v) != len").fetchone()[0]
    if bad_len:
        problems.append(f"{bad_len} churn rows whose blob length differs from len")
    with open(args.ackfile) as f:
        acked = [int(x) for x in f.read().split()]
    nack = max(acked) if acked else 0
    lost = max(0, nack - m)
    if args.mode == "write-through" and lost:
        problems.append(f"{lost} acknowledged commits lost (acked 1..{nack}, present 1..{m})")
    state[str(args.round)] = n
    with open(args.statefile, "w") as f:
        json.dump(state, f)
    print(f"acked {nack} present {m} lost {lost} churn_rows {rows}")
    for p in problems:
        print("PROBLEM:", p)
    db.close()
    return 1 if problems else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("init")
    p.add_argument("db")
    p = sub.add_parser("run")
    p.add_argument("db")
    p.add_argument("round", type=int)
    p.add_argument("ackfile")
    p.add_argument("--seed", type=int, default=1)
    p = sub.add_parser("verify")
    p.add_argument("db")
    p.add_argument("round", type=int)
    p.add_argument("ackfile")
    p.add_argument("statefile")
    p.add_argument("--mode", required=True)
    args = ap.parse_args()
    if args.cmd == "init":
        init(args)
    elif args.cmd == "run":
        run(args)
    else:
        sys.exit(verify(args))


if __name__ == "__main__":
    main()
