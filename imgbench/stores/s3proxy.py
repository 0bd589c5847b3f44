"""A delaying, rate-limiting TCP proxy: a network like a real one in front of a loopback server.

This machine's kernel refuses ``tc qdisc … netem``, so the round trip and the link's
bandwidth are made here, in user space, between the S3 clients and the server:

* every byte is held for half the round trip in each direction (``rtt_ms / 2``), so one
  HTTP request and its response pay one full round trip, as on a network;
* all connections share one link of ``bandwidth_mbps`` per direction (full duplex, like an
  Ethernet port): a chunk leaves the link when the chunks before it, from any connection,
  have been serialised at that rate (a FIFO virtual clock); 0 = unlimited;
* order is kept: each direction of each connection is a FIFO queue, and the times at which
  chunks are due only grow;
* many connections at once: one asyncio task pair per connection;
* counted: connections, bytes each way, and requests (header blocks ending in a blank line
  on the way up; exact for GET, HEAD and LIST, which carry no body, so a read's requests
  per image are counted whatever library sends them). On SIGUSR1 it prints the counts as
  one JSON line on stdout (:meth:`imgbench.stores.s3.Proxy.stats`).

Not modelled: the TCP handshake (the kernel accepts the connection at once, so a new
connection does not pay its first round trip; S3 clients keep connections alive) and packet
loss. Delays are at least the set value; asyncio's timer rounds up to the millisecond.

It runs in a process of its own (``python -m imgbench.stores.s3proxy``, started and stopped
by :class:`imgbench.stores.s3.Proxy`), so it never competes with the clients for their
interpreter's lock. On start it prints ``listening <port>`` on stdout; SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
import sys

#: bytes read per chunk: 64 KiB is 0.5 ms at 1 Gbit/s, fine enough for the link's clock
CHUNK = 64 * 1024
#: chunks queued per direction and connection (8 MiB): covers 1 Gbit/s x 60 ms in flight
QUEUE = 128

__all__ = ["Counts", "Link", "serve"]

#: the end of an HTTP request's header block
_END = b"\r\n\r\n"


class Counts:
    """What crossed the proxy since it started (one event loop: no locks needed)."""

    def __init__(self) -> None:
        self.connections = self.requests = self.bytes_up = self.bytes_down = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class Link:
    """One direction of the shared link: a FIFO virtual clock of its serialisation time."""

    def __init__(self, bandwidth_mbps: float) -> None:
        self.bytes_per_s = bandwidth_mbps * 1e6 / 8
        self.free_at = 0.0

    def leaves_at(self, nbytes: int, now: float) -> float:
        """When the last byte of a chunk that arrives ``now`` has crossed the link."""
        if self.bytes_per_s <= 0:
            return now
        self.free_at = max(now, self.free_at) + nbytes / self.bytes_per_s
        return self.free_at


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    link: Link,
    delay: float,
    counts: Counts,
    up: bool,
) -> None:
    """Copy one direction: each chunk is due ``delay`` after it has crossed the link."""
    loop = asyncio.get_running_loop()
    tail = b""  # the last bytes of the previous chunk: a header end may straddle two
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    space = asyncio.Semaphore(QUEUE)  # bounds the chunks held; the end marker never waits

    async def feed() -> None:
        nonlocal tail
        try:
            while True:
                await space.acquire()
                data = await reader.read(CHUNK)
                if not data:
                    break
                if up:
                    counts.bytes_up += len(data)
                    counts.requests += (tail + data).count(_END)
                    tail = data[-3:]
                else:
                    counts.bytes_down += len(data)
                queue.put_nowait((link.leaves_at(len(data), loop.time()) + delay, data))
        finally:
            queue.put_nowait(None)

    feeder = asyncio.create_task(feed())
    try:
        while (item := await queue.get()) is not None:
            space.release()
            due, data = item
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        await feeder  # re-raises a reset seen by the reading side
    finally:
        feeder.cancel()


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def serve(
    target: tuple[str, int],
    rtt_ms: float,
    bandwidth_mbps: float,
    port: int = 0,
    counts: Counts | None = None,
) -> asyncio.Server:
    """Listen on 127.0.0.1:``port`` (0 = any free port) and forward to ``target``."""
    delay = rtt_ms / 2000
    counts = counts if counts is not None else Counts()
    up, down = Link(bandwidth_mbps), Link(bandwidth_mbps)

    async def connection(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.CancelledError):  # cancelled at shutdown: quietly
            await relay(c_reader, c_writer)

    async def relay(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            s_reader, s_writer = await asyncio.open_connection(*target)
        except OSError:
            c_writer.close()
            return
        _nodelay(c_writer)
        _nodelay(s_writer)
        counts.connections += 1
        pumps = [
            asyncio.create_task(_pump(c_reader, s_writer, up, delay, counts, True)),
            asyncio.create_task(_pump(s_reader, c_writer, down, delay, counts, False)),
        ]
        try:
            for done in asyncio.as_completed(pumps):
                try:
                    await done
                except (OSError, asyncio.IncompleteReadError):
                    break  # one side reset: drop the connection, as a network would
        finally:
            for task in pumps:
                task.cancel()
            for w in (c_writer, s_writer):
                with contextlib.suppress(OSError):
                    w.close()

    return await asyncio.start_server(connection, "127.0.0.1", port, backlog=1024)


async def _main(target: tuple[str, int], rtt_ms: float, bandwidth_mbps: float) -> None:
    counts = Counts()
    server = await serve(target, rtt_ms, bandwidth_mbps, counts=counts)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: print(json.dumps(counts.as_dict()), flush=True))
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m imgbench.stores.s3proxy HOST:PORT --rtt-ms 10 --mbps 1000``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", help="HOST:PORT of the server")
    ap.add_argument("--rtt-ms", type=float, default=0.0)
    ap.add_argument("--mbps", type=float, default=0.0, help="bandwidth, Mbit/s; 0 = unlimited")
    args = ap.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    if not host or not port.isdigit() or args.rtt_ms < 0 or args.mbps < 0:
        sys.exit(f"s3proxy: bad arguments {args}: want HOST:PORT, --rtt-ms and --mbps >= 0")
    asyncio.run(_main((host, int(port)), args.rtt_ms, args.mbps))


if __name__ == "__main__":
    main()
