#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
#
# End-to-end: misbehaving NBD clients against flurry-nbd-memserver while a
# good client keeps writing and verifying in a thread; the good client must
# never see an error and each bad client must get its error or disconnect.
#   usage: bad_clients.py path/to/flurry-nbd-memserver
import os, socket, struct, subprocess, sys, tempfile, threading, time

IHAVEOPT, REQ, SIMPLE = 0x49484156454F5054, 0x25609513, 0x67446698
EINVAL, ENOSPC, EPERM = 22, 28, 1

def recvn(s, n):
    b = b''
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError('closed')
        b += c
    return b

def closed(s):
    s.settimeout(5)
    try:
        while s.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False

def connect(port):
    s = socket.create_connection(('127.0.0.1', port), timeout=10)
    return s

def opt(s, o, d=b''):
    s.sendall(struct.pack('>QII', IHAVEOPT, o, len(d)) + d)

def opt_reply(s):
    magic, o, t, n = struct.unpack('>QIII', recvn(s, 20))
    return t, recvn(s, n)

def handshake(s, name=b'mem'):
    assert recvn(s, 18)[:8] == b'NBDMAGIC'
    s.sendall(struct.pack('>I', 3))
    opt(s, 7, struct.pack('>I', len(name)) + name + struct.pack('>H', 0))
    while True:
        t, d = opt_reply(s)
        if t != 3:
            assert t == 1, t
            return

def request(s, t, cookie, off, ln, flags=0, payload=b''):
    s.sendall(struct.pack('>IHHQQI', REQ, flags, t, cookie, off, ln) + payload)

def simple(s):
    magic, err, cookie = struct.unpack('>IIQ', recvn(s, 16))
    assert magic == SIMPLE
    return err, cookie

def main():
    server = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix='flurry-nbd-bad.')
    proc = subprocess.Popen([server, '--export', 'mem:16M', '--export', 'ro:1M:ro'],
                            stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, 'server.err'), 'w'))
    port = None
    for line in proc.stdout:
        line = line.decode().strip()
        if line.startswith('PORT='):
            port = int(line[5:])
        if line == 'READY':
            break
    errors, ops, stop = [], [0], threading.Event()

    def good():
        try:
            s = connect(port)
            handshake(s)
            i = 0
            while not stop.is_set():
                data = bytes([i % 256]) * 4096
                off = (i % 256) * 4096
                request(s, 1, i, off, 4096, 0, data)
                if simple(s) != (0, i):
                    errors.append('write %d' % i)
                request(s, 0, i, off, 4096)
                if simple(s) != (0, i) or recvn(s, 4096) != data:
                    errors.append('read %d' % i)
                i += 1
                ops[0] = i
        except Exception as e:  # noqa
            errors.append(repr(e))

    t = threading.Thread(target=good)
    t.start()
    failures = []
    def check(cond, what):
        print(('ok   ' if cond else 'FAIL ') + what)
        if not cond:
            failures.append(what)

    s = connect(port); recvn(s, 18); s.sendall(os.urandom(200))
    check(closed(s), 'garbage handshake -> disconnect')
    s = connect(port); handshake(s)
    request(s, 0, 1, 16 << 20, 4096); check(simple(s) == (EINVAL, 1), 'read past end -> EINVAL')
    request(s, 1, 2, (16 << 20) - 512, 4096, 0, b'x' * 4096); check(simple(s) == (ENOSPC, 2), 'write past end -> ENOSPC')
    request(s, 77, 3, 0, 512); check(simple(s) == (EINVAL, 3), 'unknown command -> EINVAL')
    request(s, 0, 4, 0, 0); check(simple(s) == (EINVAL, 4), 'zero length -> EINVAL')
    request(s, 0, 5, 0, 512, 1 << 9); check(simple(s) == (EINVAL, 5), 'unknown flag -> EINVAL')
    request(s, 1, 6, 0, 1 << 30); check(closed(s), 'oversized write length -> disconnect')
    s = connect(port); handshake(s, b'ro')
    request(s, 1, 1, 0, 512, 0, b'r' * 512); check(simple(s) == (EPERM, 1), 'write to read-only -> EPERM')
    s = connect(port); handshake(s); s.sendall(b'\0' * 28); check(closed(s), 'bad request magic -> disconnect')
    for _ in range(20):
        s = connect(port); handshake(s)
        request(s, 1, 1, 0, 65536, 0, b'v' * 1000)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        s.close()
    check(True, 'clients vanishing mid-request')
    s = connect(port); recvn(s, 18); s.sendall(struct.pack('>I', 1))
    opt(s, 3); t1, _ = opt_reply(s); t2, _ = opt_reply(s); t3, _ = opt_reply(s)
    opt(s, 4242, b'zz'); check(opt_reply(s)[0] == 0x80000001, 'unknown option -> ERR_UNSUP')
    opt(s, 8, b'x'); check(opt_reply(s)[0] == 0x80000003, 'bad option length -> ERR_INVALID')
    opt(s, 7, struct.pack('>I', 3) + b'zzz' + struct.pack('>H', 0)); check(opt_reply(s)[0] == 0x80000006, 'unknown export -> ERR_UNKNOWN')
    s.sendall(struct.pack('>QII', IHAVEOPT, 7, 1 << 30)); check(closed(s), 'huge option length -> disconnect')

    deadline = time.time() + 10
    while ops[0] < 100 and time.time() < deadline:
        time.sleep(0.01)
    stop.set(); t.join()
    check(not errors and ops[0] >= 100, 'good client unaffected (%d ops, errors=%s)' % (ops[0], errors[:3]))
    proc.terminate()
    check(proc.wait(timeout=10) == 0, 'server exits cleanly')
    if failures:
        print('logs in', tmp)
        sys.exit(1)

if __name__ == '__main__':
    main()
