#!/usr/bin/env python3
"""Measures the hostile-client cases of issue 10 against a tidings binary
(figures for BENCHMARKS.md; the bounded regression tests are in
tests/suite/hostile.rs). Starts its own server on 127.0.0.1:0 in a temporary
data directory, measures from /proc/<pid>, and kills the server at the end.

usage: scripts/hostile-clients.py BINARY CASE [N]

  ping      one WebSocket client sends 125-byte pings for N s (17) without reading
  idle-h2   N (5000) h2c connections that open no stream, server RLIMIT_NOFILE 4096
  sniff     N (4000) connections that send "PRI * HT" and stall: server CPU over 5 s
  heads     N (5000) connections that each send 400 KB of an unfinished head
  limit     N (1500) SSE streams against server RLIMIT_NOFILE 1024, then /healthz

Needs python3 and prlimit (util-linux).
"""
import asyncio, json, os, resource, socket, subprocess, sys, tempfile, time

BIN = sys.argv[1]
CASE = sys.argv[2]
N = int(sys.argv[3]) if len(sys.argv) > 3 else 0


def start(extra, nofile=None):
    d = tempfile.mkdtemp()
    cmd = [BIN, "serve", "--data-dir", d + "/data", "--listen", "127.0.0.1:0"] + extra
    if nofile:
        cmd = ["prlimit", f"--nofile={nofile}:{nofile}", "--"] + cmd
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline().strip()
    port = int(line.rsplit(":", 1)[1])
    key = json.load(open(d + "/data/config.json"))["adminKey"]
    return p, port, key


def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu(pid):
    rest = open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


async def healthz(port, timeout=5.0):
    t = time.time()
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        w.write(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        await w.drain()
        data = await asyncio.wait_for(r.read(200), timeout)
        w.close()
        return data.split(b"\r\n")[0].decode(), round(time.time() - t, 3)
    except Exception as e:
        return f"no answer ({type(e).__name__})", round(time.time() - t, 3)


def mb(x):
    return f"{x / 2**20:.0f} MiB"


async def ping_flood(port, key, pid, seconds):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall((f"GET /api/v1/topics/ws HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\n"
               f"sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nx-api-key: {key}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    frame = bytes([0x89, 0x80 | 125, 0, 0, 0, 0]) + b"p" * 125
    chunk = frame * 512
    s.settimeout(0.2)
    before = rss(pid)
    peak = before
    start = time.time()
    closed = None
    sent = 0
    while time.time() - start < seconds:
        try:
            sent += s.send(chunk)
        except socket.timeout:
            pass
        except OSError:
            closed = time.time() - start
            break
        peak = max(peak, rss(pid))
    print(f"ping flood {seconds}s: sent {mb(sent)} of pings; server RSS {mb(before)} -> peak {mb(peak)}; "
          f"closed by server: {'after %.1fs' % closed if closed else 'no'}")


async def many(port, n, payload, hold):
    conns = []
    for i in range(n):
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            if payload:
                w.write(payload)
            conns.append((r, w))
        except OSError as e:
            print(f"  client connect failed after {i}: {e}")
            break
    return conns


async def main():
    if CASE == "ping":
        p, port, key = start([])
        await ping_flood(port, key, p.pid, N or 17)
    elif CASE == "idle-h2":
        p, port, key = start([], nofile=4096)
        base = fds(p.pid)
        conns = await many(port, N or 5000, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0", True)
        await asyncio.sleep(2)
        print(f"idle h2c x{len(conns)} (server RLIMIT_NOFILE 4096): fds {base} -> {fds(p.pid)}; /healthz: {await healthz(port)}")
        await asyncio.sleep(15)
        print(f"  after 15 s more: fds {fds(p.pid)}; /healthz: {await healthz(port)}")
    elif CASE == "sniff":
        p, port, key = start([])
        conns = await many(port, N or 4000, b"PRI * HT", True)
        await asyncio.sleep(1)
        c0 = cpu(p.pid)
        await asyncio.sleep(5)
        used = cpu(p.pid) - c0
        print(f"{len(conns)} stalled preface prefixes: server CPU {used:.2f} s in 5 s ({used / 5 * 100:.0f}% of a core)")
    elif CASE == "heads":
        p, port, key = start([])
        before = rss(p.pid)
        filler = b"a" * (400 << 10)
        conns = []
        peak = before
        for i in range(N or 5000):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"GET /healthz HTTP/1.1\r\nx-filler: " + filler)
            conns.append((r, w))
            if i % 100 == 0:
                await asyncio.sleep(0.05)
                peak = max(peak, rss(p.pid))
        for _ in range(20):
            await asyncio.sleep(0.25)
            peak = max(peak, rss(p.pid))
        print(f"{len(conns)} unfinished 400 KB heads: server RSS {mb(before)} -> peak {mb(peak)}; /healthz: {await healthz(port)}")
    elif CASE == "limit":
        p, port, key = start(["--header-timeout", "60s"], nofile=1024)
        req = (f"GET /api/v1/topics/held/stream HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\nx-api-key: {key}\r\n\r\n").encode()
        conns = await many(port, N or 1500, req, True)
        await asyncio.sleep(2)
        print(f"{len(conns)} SSE streams (server RLIMIT_NOFILE 1024): server fds {fds(p.pid)}; /healthz: {await healthz(port)}")
    p.kill()
    p.wait(10)


asyncio.run(main())
