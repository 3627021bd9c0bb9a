#!/usr/bin/env python3
"""TCP latency proxy: make a loopback service look like it is far away.

    bench/slowlink.py LISTEN TARGET [--rtt-ms 40]

LISTEN and TARGET are "port" or "host:port" (host defaults to 127.0.0.1).
Every chunk of bytes is held back for RTT/2 in each direction, so a
request/response exchange costs one full RTT, like a real WAN link.  Order is
preserved, half-closes (EOF) are forwarded after the same delay, and bandwidth
is not limited: this models latency only (an ideal link with an unbounded
bandwidth-delay product), which is what separates pipelining/batching clients
from lock-step ones.

On startup it prints "slowlink listening on HOST:PORT" and flushes, so a
caller can wait for that line.  Stop it with SIGTERM/SIGINT.
"""
import argparse
import asyncio
import signal
import socket
import sys
import time


def hostport(s):
    if ":" in s:
        h, p = s.rsplit(":", 1)
        return h or "127.0.0.1", int(p)
    return "127.0.0.1", int(s)


async def pipe(reader, writer, delay):
    """Copy reader -> writer, delivering each chunk `delay` seconds after it arrived."""
    loop = asyncio.get_running_loop()
    q = asyncio.Queue()

    async def receive():
        try:
            while True:
                data = await reader.read(256 * 1024)
                await q.put((loop.time() + delay, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            await q.put((loop.time() + delay, b""))

    async def send():
        try:
            while True:
                due, data = await q.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            return

    rx = asyncio.create_task(receive())
    try:
        await send()
    finally:
        rx.cancel()


async def handle(creader, cwriter, target, delay):
    try:
        sreader, swriter = await asyncio.open_connection(*target)
    except OSError as e:
        print("slowlink: cannot connect to %s:%d: %s" % (target[0], target[1], e), file=sys.stderr)
        cwriter.close()
        return
    for w in (cwriter, swriter):
        sock = w.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        await asyncio.gather(pipe(creader, swriter, delay), pipe(sreader, cwriter, delay))
    finally:
        for w in (cwriter, swriter):
            try:
                w.close()
            except Exception:
                pass


async def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("listen")
    ap.add_argument("target")
    ap.add_argument("--rtt-ms", type=float, default=40.0)
    a = ap.parse_args()
    delay = a.rtt_ms / 2000.0
    lhost, lport = hostport(a.listen)
    target = hostport(a.target)

    server = await asyncio.start_server(lambda r, w: handle(r, w, target, delay), lhost, lport,
                                        reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("slowlink listening on %s:%d -> %s:%d, rtt %.1f ms" % (lhost, lport, target[0], target[1], a.rtt_ms),
          flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
