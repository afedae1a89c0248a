#!/usr/bin/env python3
"""Test helper: a TCP proxy that cuts one connection mid-answer, once.

Usage: cutproxy.py LISTEN_PORT TARGET_PORT CUT_BYTES
Forwards every connection on 127.0.0.1:LISTEN_PORT to 127.0.0.1:TARGET_PORT. The first
connection whose answer passes CUT_BYTES is cut there (both sides shut down and closed), as a
dropped network or a crashing load balancer would; every other byte passes unchanged.
"""
import socket, sys, threading

listen_port, target_port, cut = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
lock = threading.Lock()
state = {"cut": False}


def cut_off(s):
    # shutdown() first: a plain close() would not end the other thread's recv() on the same
    # socket, and the peer would see nothing until its read timeout.
    for step in (lambda: s.shutdown(socket.SHUT_RDWR), s.close):
        try:
            step()
        except OSError:
            pass


def pump(src, dst, count):
    sent = 0
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if count:
                with lock:
                    if not state["cut"] and sent + len(data) > cut:
                        state["cut"] = True
                        dst.sendall(data[: cut - sent])
                        cut_off(dst)
                        cut_off(src)
                        return
                sent += len(data)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", listen_port))
server.listen(64)
while True:
    client, _ = server.accept()
    upstream = socket.create_connection(("127.0.0.1", target_port))
    threading.Thread(target=pump, args=(client, upstream, False), daemon=True).start()
    threading.Thread(target=pump, args=(upstream, client, True), daemon=True).start()
