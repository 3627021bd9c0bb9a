#!/usr/bin/env python3
"""Byte-counting TCP relay: what crossed the wire, per connection.

    bench/countlink.py LISTEN TARGET LOG

LISTEN and TARGET are ports on 127.0.0.1.  Every connection is relayed
unchanged; when it ends, a line "DOWN UP" (bytes server->client, bytes
client->server) is appended to LOG.  Prints "countlink listening" once
ready.  Stop it with SIGTERM.
"""
import socket
import sys
import threading


def pump(src, dst, counter, key):
    try:
        while True:
            data = src.recv(262144)
            if not data:
                break
            counter[key] += len(data)
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def serve(client, target, log, lock):
    try:
        server = socket.create_connection(("127.0.0.1", target))
    except OSError:
        client.close()
        return
    counter = {"down": 0, "up": 0}
    t = threading.Thread(target=pump, args=(client, server, counter, "up"))
    t.start()
    pump(server, client, counter, "down")
    t.join()
    client.close()
    server.close()
    with lock, open(log, "a") as f:
        f.write("%d %d\n" % (counter["down"], counter["up"]))


def main():
    listen, target, log = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", listen))
    s.listen(64)
    print("countlink listening on 127.0.0.1:%d" % listen, flush=True)
    lock = threading.Lock()
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c, target, log, lock), daemon=True).start()


if __name__ == "__main__":
    main()
