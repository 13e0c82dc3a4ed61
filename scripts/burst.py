#!/usr/bin/env python3
"""The client side of scripts/burst: read that script's header first.

Python 3.11, standard library only. scripts/burst starts and stops the
demo; this file picks its port, waits for it, fires a burst at it and
prints the result line:

    burst.py port                      print a free loopback port
    burst.py wait PORT PID [SECONDS]   wait until the demo answers HTTP
    burst.py header                    print the table's header
    burst.py run SCENARIO PORT PID N   fire the burst, print one line

`run` exits 0 after printing its line, 3 if the demo was gone by the end
of the burst (the line is printed all the same), 2 on bad arguments.
"""

import http.client
import os
import resource
import socket
import sys
import threading
import time
import urllib.parse

SCENARIOS = ("one-user", "many-users-many-addresses")
WRONG_PASSWORD = "not-the-password"
# Seconds a request may take from the barrier to its last byte.
TIMEOUT = float(os.environ.get("BURST_TIMEOUT", "300"))
# How often /proc/PID/status is read during the burst.
POLL_SECONDS = 0.005
COLUMNS = "{:<26} {:>5}  {:<34} {:>9} {:>9} {:>8} {:>7} {:>7}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid):
    """VmHWM and VmRSS (MiB) and Threads of `pid`, or None if it is gone
    (a zombie has no Vm* lines)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    if "VmHWM" not in fields or fields.get("State", ["Z"])[0] in ("Z", "X"):
        return None
    return {
        "hwm": int(fields["VmHWM"][0]) / 1024,
        "rss": int(fields["VmRSS"][0]) / 1024,
        "threads": int(fields["Threads"][0]),
    }


def wait_until_up(port, pid, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc_status(pid) is None:
            print(f"burst: the demo (pid {pid}) exited while starting", file=sys.stderr)
            return 1
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/login")
            conn.getresponse().read()
            conn.close()
            return 0
        except OSError:
            time.sleep(0.1)
    print(f"burst: the demo did not answer on port {port} within {seconds:.0f} s", file=sys.stderr)
    return 1


def source_address(i):
    """A distinct loopback address per request: 127.0.1.1, 127.0.1.2, ...
    (never 127.0.0.1, the one-user scenario's source)."""
    return f"127.0.{1 + i // 254}.{1 + i % 254}"


def plan(scenario, n):
    """(source address, username) of each request."""
    if scenario == "one-user":
        return [("127.0.0.1", "susan")] * n
    if n > 254 * 254:
        raise SystemExit(f"burst: {scenario} has loopback addresses for at most {254 * 254} requests")
    return [(source_address(i), f"nobody-{i:05d}") for i in range(n)]


def request_bytes(port, username):
    # What a browser's form submission sends, minus cookies and the Origin
    # header (without Origin the demo's cross-origin guard lets it through).
    # remember_me is left out, as an unticked checkbox is.
    body = urllib.parse.urlencode({"username": username, "password": WRONG_PASSWORD}).encode()
    head = (
        f"POST /login HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: close\r\n"
        f"\r\n"
    ).encode()
    return head + body


def error_name(error):
    if isinstance(error, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, ConnectionResetError):
        return "reset"
    if isinstance(error, BrokenPipeError):
        return "broken-pipe"
    return "error-" + (getattr(error, "strerror", None) or type(error).__name__).replace(" ", "-").lower()


class Burst:
    def __init__(self, port, requests):
        self.port = port
        self.requests = requests
        self.barrier = threading.Barrier(len(requests) + 1)
        self.results = [None] * len(requests)
        self.finished = [None] * len(requests)
        self.start = time.monotonic()

    def one(self, i, source, username):
        sock = None
        try:
            # Connect before the barrier, so that after it every request
            # is only a send away from the demo.
            try:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.settimeout(30)
                sock.bind((source, 0))
                sock.connect(("127.0.0.1", self.port))
            except OSError as error:
                self.results[i] = "connect-" + error_name(error)
                if sock:
                    sock.close()
                sock = None
            try:
                self.barrier.wait(timeout=120)
            except threading.BrokenBarrierError:
                if self.results[i] is None:
                    self.results[i] = "barrier-broken"
                return
            if sock is None:
                return
            deadline = self.start + TIMEOUT
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            sock.sendall(request_bytes(self.port, username))
            data = b""
            while True:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            line = data.split(b"\r\n", 1)[0].split()
            if len(line) >= 2 and line[0].startswith(b"HTTP/") and line[1].isdigit():
                self.results[i] = line[1].decode()
            elif data:
                self.results[i] = "garbled"
            else:
                self.results[i] = "closed-no-answer"
        except OSError as error:
            self.results[i] = error_name(error)
        finally:
            self.finished[i] = time.monotonic()
            if sock:
                sock.close()


def raise_fd_limit(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 64
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < want:
            print(f"burst: only {new} file descriptors: some connections will fail", file=sys.stderr)


def run(scenario, port, pid, n):
    requests = plan(scenario, n)
    raise_fd_limit(n)
    threading.stack_size(256 * 1024)
    before = proc_status(pid)
    if before is None:
        print(f"burst: the demo (pid {pid}) is not running", file=sys.stderr)
        return 3
    burst = Burst(port, requests)
    threads = [
        threading.Thread(target=burst.one, args=(i, source, username), daemon=True)
        for i, (source, username) in enumerate(requests)
    ]
    for thread in threads:
        thread.start()

    peak = dict(before)
    gone = threading.Event()
    done = threading.Event()

    def poll():
        while not done.is_set():
            status = proc_status(pid)
            if status is None:
                gone.set()
                return
            peak["hwm"] = status["hwm"]
            peak["rss"] = max(peak["rss"], status["rss"])
            peak["threads"] = max(peak["threads"], status["threads"])
            time.sleep(POLL_SECONDS)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    # The workers' deadlines count from here; the wall time from the barrier.
    burst.start = time.monotonic()
    try:
        burst.barrier.wait(timeout=120)
    except threading.BrokenBarrierError:
        print("burst: not every connection was ready within 120 s", file=sys.stderr)
    released = time.monotonic()
    for thread in threads:
        thread.join(TIMEOUT + 60)
    wall = max([t for t in burst.finished if t is not None], default=released) - released
    done.set()
    poller.join()
    after = proc_status(pid)
    if after is not None:
        peak["hwm"] = after["hwm"]

    counts = {}
    for result in burst.results:
        result = result or "no-result"
        counts[result] = counts.get(result, 0) + 1
    order = sorted(counts, key=lambda k: (not k.isdigit(), k))
    statuses = " ".join(f"{k}:{counts[k]}" for k in order)
    hwm_after = "gone" if after is None else f"{peak['hwm']:.0f}"
    print(
        COLUMNS.format(
            scenario,
            n,
            statuses,
            f"{before['hwm']:.0f}",
            hwm_after,
            f"{peak['rss']:.0f}",
            peak["threads"],
            f"{wall:.2f}",
        ),
        flush=True,
    )
    return 3 if after is None or gone.is_set() else 0


def main(argv):
    try:
        if argv[:1] == ["port"]:
            print(free_port())
            return 0
        if argv[:1] == ["wait"] and len(argv) in (3, 4):
            return wait_until_up(int(argv[1]), int(argv[2]), float(argv[3]) if len(argv) == 4 else 60)
        if argv == ["header"]:
            print(COLUMNS.format("scenario", "reqs", "answers (HTTP status:count)",
                                 "HWM0 MiB", "HWM1 MiB", "RSSmax", "thr.max", "wall s"))
            return 0
        if argv[:1] == ["run"] and len(argv) == 5 and argv[1] in SCENARIOS:
            return run(argv[1], int(argv[2]), int(argv[3]), int(argv[4]))
    except ValueError:
        pass
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
