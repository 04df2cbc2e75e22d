#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
#
# A minimal NBD client that keeps a record of acknowledged writes, for
# checking that every acknowledged write survives a server stop.
#
#   nbd_ack_writer.py write PORT EXPORT ACKED PROGRESS
#       Writes distinct 64 KiB slots of the export in random order, up to
#       DEPTH requests in flight, each of 4 KiB..64 KiB (512-byte steps)
#       from the slot's start, with content derived from the slot number,
#       until the server closes the connection or every slot was written.
#       Every write the server acknowledged with error 0 is appended to
#       ACKED as "slot length"; PROGRESS holds the running count. Exit 0
#       when it wrote at least one slot; the connection ending is expected.
#   nbd_ack_writer.py check PORT EXPORT ACKED
#       Reads back every slot listed in ACKED; exit 1 unless each holds
#       exactly what was written.
import random
import socket
import struct
import sys
import threading

IHAVEOPT, REQ_MAGIC, SIMPLE_MAGIC = 0x49484156454F5054, 0x25609513, 0x67446698
CMD_READ, CMD_WRITE, CMD_DISC = 0, 1, 2
SLOT, DEPTH = 64 * 1024, 16


def recvn(s, n):
    b = bytearray()
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError("server closed the connection")
        b += c
    return bytes(b)


def connect(port, name):
    """Fixed-newstyle handshake with NBD_OPT_GO; returns (socket, export size)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assert recvn(s, 18)[:8] == b"NBDMAGIC"
    s.sendall(struct.pack(">I", 3))  # fixed newstyle, no zeroes
    name = name.encode()
    data = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
    s.sendall(struct.pack(">QII", IHAVEOPT, 7, len(data)) + data)
    size = None
    while True:
        _, _, rtype, n = struct.unpack(">QIII", recvn(s, 20))
        payload = recvn(s, n)
        if rtype == 1:  # NBD_REP_ACK
            break
        if rtype != 3:  # NBD_REP_INFO
            sys.exit(f"NBD_OPT_GO failed: reply {rtype:#x} {payload!r}")
        if struct.unpack(">H", payload[:2])[0] == 0:  # NBD_INFO_EXPORT
            size = struct.unpack(">Q", payload[2:10])[0]
    return s, size


def content(slot, length):
    return (struct.pack("<QQ", slot, 0xF1022E5D15C0FFEE) * (SLOT // 16))[:length]


def write(port, name, acked_path, progress_path):
    s, size = connect(port, name)
    slots = list(range(size // SLOT))
    random.shuffle(slots)
    pending = {}  # cookie -> (slot, length)
    lock = threading.Condition()
    acked, errors, ended = [], [], []
    done = threading.Event()

    def receive():
        try:
            while True:
                magic, err, cookie = struct.unpack(">IIQ", recvn(s, 16))
                if magic != SIMPLE_MAGIC:
                    raise ValueError(f"bad reply magic {magic:#x}")
                with lock:
                    slot, length = pending.pop(cookie)
                    if err == 0:
                        acked.append((slot, length))
                        if len(acked) % 50 == 0:
                            with open(progress_path, "w") as f:
                                f.write(f"{len(acked)}\n")
                    else:
                        errors.append((slot, err))
                    lock.notify()
        except (EOFError, OSError, ValueError) as e:
            ended.append(str(e))
        finally:
            done.set()
            with lock:
                lock.notify()

    rx = threading.Thread(target=receive, daemon=True)
    rx.start()
    try:
        for cookie, slot in enumerate(slots, 1):
            with lock:
                while len(pending) >= DEPTH and not done.is_set():
                    lock.wait()
                if done.is_set():
                    break
                length = random.randrange(8, SLOT // 512 + 1) * 512
                pending[cookie] = (slot, length)
            s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_WRITE, cookie, slot * SLOT, length)
                      + content(slot, length))
        else:
            with lock:
                while pending and not done.is_set():
                    lock.wait()
            print("note: every slot was written before the server went away")
    except OSError:
        pass  # the server closed the connection while we were sending
    done.wait(30)
    with lock:
        with open(acked_path, "w") as f:
            for slot, length in acked:
                f.write(f"{slot} {length}\n")
        with open(acked_path + ".unanswered", "w") as f:
            for slot, length in pending.values():
                f.write(f"{slot} {length}\n")
        print(f"acknowledged {len(acked)} writes, {len(errors)} failed with an error, "
              f"{len(pending)} unanswered when the connection ended ({'; '.join(ended) or 'all answered'})")
    return 0 if acked else 1


def check(port, name, acked_path):
    s, _ = connect(port, name)
    bad = 0
    entries = [tuple(map(int, line.split())) for line in open(acked_path)]
    for cookie, (slot, length) in enumerate(entries, 1):
        s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_READ, cookie, slot * SLOT, length))
        magic, err, rcookie = struct.unpack(">IIQ", recvn(s, 16))
        if magic != SIMPLE_MAGIC or rcookie != cookie or err != 0:
            sys.exit(f"read of slot {slot} failed: magic {magic:#x} error {err}")
        if recvn(s, length) != content(slot, length):
            bad += 1
            if bad <= 5:
                print(f"slot {slot} (offset {slot * SLOT}, {length} bytes): acknowledged data lost")
    s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_DISC, 0, 0, 0))
    print(f"checked {len(entries)} acknowledged writes: {bad} lost")
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "write":
        sys.exit(write(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]))
    if len(sys.argv) == 5 and sys.argv[1] == "check":
        sys.exit(check(int(sys.argv[2]), sys.argv[3], sys.argv[4]))
    sys.exit("usage: nbd_ack_writer.py write PORT EXPORT ACKED PROGRESS | check PORT EXPORT ACKED")
