#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Filesystem workload and verifier for tests/crash/fs_crash.sh.

  fs_workload.py run DIR LOG [--seed N] [--seconds S]
      Creates files in DIR (new directory) until killed or S seconds pass:
      creates (write a temp file, fsync it, rename into place, fsync the
      directory), appends (fsync), renames (fsync the directory), plus
      scratch files written without fsync. Appends one line to LOG after
      each operation is durable, and an intent line before each operation
      that changes a durable file, so that a crash at any moment leaves a
      log that says exactly what must be on disk:
          durable NAME SHA256 SIZE     NAME holds exactly this (fsync'd)
          intent append NAME           an append to NAME may be partial
          intent rename OLD NEW        OLD may already be NEW
          renamed OLD NEW              the rename is durable
      LOG lines are written with os.write (no buffering) outside DIR.

  fs_workload.py verify DIR LOG [--report-only]
      Replays LOG and checks DIR: every durable file exists with its
      checksum; a file with an append in progress still starts with its
      durable content; a file being renamed exists under exactly one of
      its names. Prints what is wrong; exits 1 if anything is (0 with
      --report-only, which only counts).
"""
import argparse
import hashlib
import os
import random
import sys
import time


def sha(data):
    return hashlib.sha256(data).hexdigest()


def run(args):
    os.makedirs(args.dir)
    rng = random.Random(args.seed)
    logfd = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    dirfd = os.open(args.dir, os.O_RDONLY | os.O_DIRECTORY)

    def log(line):
        os.write(logfd, (line + "\n").encode())

    def path(name):
        return os.path.join(args.dir, name)

    files = {}  # name -> content (durable)
    n = 0
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        r = rng.random()
        n += 1
        if r < 0.35 or not files:
            name = "f%d" % n
            data = rng.randbytes(rng.choice([0, 100, 4096, 10000, 65536, 200000]))
            fd = os.open(path(name + ".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, data)
            os.fsync(fd)
            os.close(fd)
            os.rename(path(name + ".tmp"), path(name))
            os.fsync(dirfd)
            files[name] = data
            log("durable %s %s %d" % (name, sha(data), len(data)))
        elif r < 0.65:
            name = rng.choice(sorted(files))
            extra = rng.randbytes(rng.choice([1, 512, 4096, 30000]))
            log("intent append %s" % name)
            fd = os.open(path(name), os.O_WRONLY | os.O_APPEND)
            os.write(fd, extra)
            os.fsync(fd)
            os.close(fd)
            files[name] += extra
            log("durable %s %s %d" % (name, sha(files[name]), len(files[name])))
        elif r < 0.85:
            old = rng.choice(sorted(files))
            new = "g%d" % n
            log("intent rename %s %s" % (old, new))
            os.rename(path(old), path(new))
            os.fsync(dirfd)
            files[new] = files.pop(old)
            log("renamed %s %s" % (old, new))
        else:
            # Scratch data never fsync'd: more dirty state for the crash.
            with open(path("s%d" % (n % 16)), "wb") as f:
                f.write(rng.randbytes(rng.choice([4096, 100000])))
    return 0


def verify(args):
    state = {}  # name -> [sha, size, pending]; pending: None | ("append",) | ("rename", new)
    with open(args.log) as f:
        for line in f:
            w = line.split()
            if not w:
                continue
            if w[0] == "durable":
                state[w[1]] = [w[2], int(w[3]), None]
            elif w[0] == "intent" and w[1] == "append":
                state[w[2]][2] = ("append",)
            elif w[0] == "intent" and w[1] == "rename":
                state[w[2]][2] = ("rename", w[3])
            elif w[0] == "renamed":
                s = state.pop(w[1])
                s[2] = None
                state[w[2]] = s
            else:
                print("%s: unparsable line %r" % (args.log, line))
                return 1

    def content(name):
        try:
            with open(os.path.join(args.dir, name), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    bad = []
    for name, (digest, size, pending) in sorted(state.items()):
        data = content(name)
        if pending is None:
            if data is None:
                bad.append("%s: fsync'd file is missing" % name)
            elif sha(data) != digest:
                bad.append("%s: content differs from the fsync'd one (%d bytes, expected %d)" % (name, len(data), size))
        elif pending[0] == "append":
            if data is None:
                bad.append("%s: fsync'd file (append in progress) is missing" % name)
            elif len(data) < size or sha(data[:size]) != digest:
                bad.append("%s: fsync'd prefix damaged by an unfinished append" % name)
        else:
            other = content(pending[1])
            found = [d for d in (data, other) if d is not None]
            if len(found) != 1:
                bad.append("%s: being renamed to %s, found under %d names" % (name, pending[1], len(found)))
            elif sha(found[0]) != digest:
                bad.append("%s: being renamed to %s, content differs" % (name, pending[1]))
    print("%s: %d fsync'd files checked, %d wrong" % (args.dir, len(state), len(bad)))
    for b in bad[:20]:
        print("  " + b)
    return 1 if bad and not args.report_only else 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("dir")
    r.add_argument("log")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--seconds", type=float, default=3600)
    v = sub.add_parser("verify")
    v.add_argument("dir")
    v.add_argument("log")
    v.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    try:
        return run(args) if args.cmd == "run" else verify(args)
    except OSError as e:
        # Expected in `run` once the device under the filesystem is killed.
        print("fs_workload: %s" % e, file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
