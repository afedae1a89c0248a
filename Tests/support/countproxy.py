#!/usr/bin/env python3
"""Test helper: a TCP proxy that counts what the server sends and drops every connection at
given totals, as a network that fails now and then would.

Usage: countproxy.py LISTEN_PORT TARGET_PORT COUNT_FILE CUT_BYTES[,CUT_BYTES...]
Forwards every connection on 127.0.0.1:LISTEN_PORT to 127.0.0.1:TARGET_PORT. Counts the bytes
the server sends, over all connections since the start, and writes the total to COUNT_FILE
(at every connection's end, and about every 16 MiB). Each time the total passes one of the
CUT_BYTES, every open connection is cut at once (both sides shut down and closed).
"""
import os
import socket
import sys
import threading

listen_port, target_port, count_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
cuts = sorted(int(c) for c in sys.argv[4].split(",") if c)
lock = threading.Lock()
state = {"total": 0, "written": 0, "open": set()}


def save():
    tmp = count_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(state["total"]))
    os.replace(tmp, count_file)


def cut_off(s):
    # shutdown() first: a plain close() would not end the other thread's recv() on the socket.
    for step in (lambda: s.shutdown(socket.SHUT_RDWR), s.close):
        try:
            step()
        except OSError:
            pass


def pump(src, dst, count):
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    try:
        while True:
            n = src.recv_into(buffer)
            if not n:
                break
            if count:
                with lock:
                    before = state["total"]
                    state["total"] += n
                    crossed = [c for c in cuts if before < c <= state["total"]]
                    if state["total"] - state["written"] >= 16 << 20:
                        state["written"] = state["total"]
                        save()
                    if crossed:
                        save()
                        for pair in list(state["open"]):
                            for s in pair:
                                cut_off(s)
                        return
            dst.sendall(view[:n])
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with lock:
            save()


server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", listen_port))
server.listen(64)
save()
while True:
    client, _ = server.accept()
    upstream = socket.create_connection(("127.0.0.1", target_port))
    with lock:
        state["open"].add((client, upstream))
    threading.Thread(target=pump, args=(client, upstream, False), daemon=True).start()
    threading.Thread(target=pump, args=(upstream, client, True), daemon=True).start()
