#!/usr/bin/env python3
"""Where the bytes the receiver writes go: a burst of distinct notifications and its drain,
the receiver's writes traced (strace: every pwrite64 with the first bytes it wrote), split by
phase (burst, drain), by file (WAL, database, temporary files) and, for WAL frames and
checkpoint copies, by the table or index owning the page (SQLite's dbstat on a copy of the
store taken at the end of each phase).

    scripts/write_profile.py BIN MOCK [DURATION] [CONNECTIONS]
    NOTRACE=1 scripts/write_profile.py ...   # only write_bytes, untraced

BIN is the receiver, MOCK the mock WxPusher example (examples/mock_wxpusher.rs), both built
already (debug or release). The burst is `scripts/bench`'s: wrk posts the 5-alert payload
with a distinct fingerprint and group key per request. Tracing slows the writer, so group
commits are larger than untraced; the split, not the total, is what this is for (the total
untraced is `write_bytes` of /proc/PID/io, printed beside it). Needs strace, wrk, python3.
"""

import collections
import os
import re
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

PAYLOAD = "examples/alertmanager-firing-5.json"
TOKEN = "profile-token"


def free_port(p):
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", p)) != 0:
                return p
        p += 1


def wait_port(p):
    for _ in range(600):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", p)) == 0:
                return
        time.sleep(0.1)
    sys.exit(f"nothing listens on {p}")


def depth(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith("alertmanager_wechat_queue_depth"))


def written(pid):
    for line in open(f"/proc/{pid}/io"):
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def page_owners(data):
    """page number → table or index, from a copy of the store (dbstat)."""
    snap = tempfile.mkdtemp()
    try:
        for f in os.listdir(data):
            if f.startswith("queue.sqlite3"):
                shutil.copy(os.path.join(data, f), snap)
        conn = sqlite3.connect(os.path.join(snap, "queue.sqlite3"))
        owners = {pg: name for name, pg in conn.execute("SELECT name, pageno FROM dbstat")}
        # the free list (trunk pages and the leaves they name)
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.close()
        with open(os.path.join(snap, "queue.sqlite3"), "rb") as f:
            db = f.read()
        trunk = struct.unpack(">I", db[32:36])[0]
        while trunk and trunk * size <= len(db):
            page = db[(trunk - 1) * size: trunk * size]
            owners.setdefault(trunk, "(free list)")
            n = struct.unpack(">I", page[4:8])[0]
            for i in range(min(n, (size - 8) // 4)):
                owners.setdefault(struct.unpack(">I", page[8 + 4 * i: 12 + 4 * i])[0], "(free list)")
            trunk = struct.unpack(">I", page[0:4])[0]
        return owners, size
    finally:
        shutil.rmtree(snap)


LINE = re.compile(r'^(\d+)\s+(?:<\.\.\. )?(\w+)\((.*)\)\s+=\s+(-?\d+)')


def parse(trace):
    """[(syscall, args, result)] in order (strace -f output, unfinished calls joined)."""
    pending = {}
    out = []
    for raw in open(trace, errors="replace"):
        raw = raw.rstrip("\n")
        if raw.endswith("<unfinished ...>"):
            pid = raw.split()[0]
            pending[pid] = raw[: -len("<unfinished ...>")].rstrip()
            continue
        m = re.match(r"^(\d+)\s+<\.\.\. (\w+) resumed>(.*)$", raw)
        if m:
            pid = m.group(1)
            raw = pending.pop(pid, f"{pid} {m.group(2)}(") + m.group(3)
        m = re.match(r"^(\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+)", raw)
        if m:
            out.append((m.group(2), m.group(3), int(m.group(4))))
    return out


def hexbytes(s):
    m = re.match(r'\s*"((?:\\x[0-9a-f]{2})*)"', s)
    return bytes(int(h, 16) for h in re.findall(r"\\x([0-9a-f]{2})", m.group(1))) if m else b""


def main():
    binary, mock = sys.argv[1], sys.argv[2]
    duration = sys.argv[3] if len(sys.argv) > 3 else "5s"
    conns = sys.argv[4] if len(sys.argv) > 4 else "64"
    work = tempfile.mkdtemp()
    procs = []
    try:
        mport = free_port(19399)
        procs.append(subprocess.Popen([mock, f"127.0.0.1:{mport}"], stderr=subprocess.DEVNULL))
        wait_port(mport)
        data = os.path.join(work, "data")
        cfg = os.path.join(work, "config.yml")
        with open(cfg, "w") as f:
            f.write(f"""global: {{ wxpusher_api_url: "http://127.0.0.1:{mport}", timezone: Asia/Shanghai }}
auth: {{ bearer_token: {TOKEN} }}
storage: {{ path: {data} }}
route: {{ receiver: oncall }}
receivers:
  - name: oncall
    wxpusher_configs:
      - {{ app_token: AT_profile, uids: [UID_a] }}
""")
        port = free_port(19397)
        recv = subprocess.Popen([binary, f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}",
                                 "--log.level=warn"], stderr=open(os.path.join(work, "log"), "w"))
        procs.append(recv)
        wait_port(port)
        trace = os.path.join(work, "trace")
        notrace = bool(os.environ.get("NOTRACE"))
        if notrace:
            open(trace, "w").close()
            st = subprocess.Popen(["sleep", "36000"])
        else:
          st = subprocess.Popen(["strace", "-f", "-qq", "-xx", "-s", "8", "-e", "trace=pwrite64,openat,close,ftruncate",
                               "-e", "signal=none", "-o", trace, "-p", str(recv.pid)])
        time.sleep(2)
        # Files opened before the trace began.
        opened = {}
        for fd in os.listdir(f"/proc/{recv.pid}/fd"):
            try:
                opened[int(fd)] = os.readlink(f"/proc/{recv.pid}/fd/{fd}")
            except OSError:
                pass
        lua = os.path.join(work, "post.lua")
        with open(lua, "w") as f:
            f.write(f"""local threads, counter, prefix, template = 0, 0, "", ""
function setup(thread) thread:set("prefix", "t" .. threads); threads = threads + 1 end
function init(args) local f = assert(io.open("{PAYLOAD}", "rb")); template = f:read("*a"); f:close() end
function request()
    counter = counter + 1
    local id = prefix .. "-" .. counter
    local body = template:gsub('"fingerprint": *"([^"]*)"', '"fingerprint": "%1-' .. id .. '"')
    body = body:gsub('"groupKey": *"', '"groupKey": "' .. id .. '-')
    return wrk.format("POST", nil, {{["Content-Type"] = "application/json", ["Authorization"] = "Bearer {TOKEN}"}}, body)
end
""")
        w0 = written(recv.pid)
        out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{duration}", "-s", lua,
                              f"http://127.0.0.1:{port}/webhook"], capture_output=True, text=True).stdout
        total = int(re.search(r"(\d+) requests in", out).group(1))
        bad = sum(int(x) for x in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
        ok = total - bad
        w_burst = written(recv.pid) - w0
        os.kill(recv.pid, signal.SIGSTOP)
        time.sleep(0.5)
        mark_lines = sum(1 for _ in open(trace, errors="replace"))
        burst_owners, size = page_owners(data)
        os.kill(recv.pid, signal.SIGCONT)
        quiet = 0
        for _ in range(3000):
            time.sleep(0.2)
            quiet = quiet + 1 if depth(port) == 0 else 0
            if quiet >= 25:
                break
        w_all = written(recv.pid) - w0
        os.kill(recv.pid, signal.SIGSTOP)
        time.sleep(0.5)
        drain_owners, _ = page_owners(data)
        os.kill(recv.pid, signal.SIGCONT)
        st.send_signal(signal.SIGINT)
        st.wait()
        if notrace:
            print(f"accepted {ok} of {total} in {duration} (untraced)")
            print(f"write_bytes (/proc/PID/io): burst {w_burst / ok:.0f} B/request, burst+drain "
                  f"{w_all / ok:.0f} B/request = {w_all / (ok * (os.path.getsize(PAYLOAD) + 54)):.2f} per payload byte")
            return

        payload = os.path.getsize(PAYLOAD) + 6 * 9
        lines = open(trace, errors="replace").read().splitlines()
        phases = {"burst": lines[:mark_lines], "drain": lines[mark_lines:]}
        print(f"accepted {ok} of {total}; payload {payload} B; page {size} B")
        print(f"write_bytes (/proc/PID/io, traced): burst {w_burst / ok:.0f} B/request, "
              f"burst+drain {w_all / ok:.0f} B/request = {w_all / (ok * payload):.2f} per payload byte")
        fds = dict(opened)
        for phase, chunk in phases.items():
            path = os.path.join(work, f"trace.{phase}")
            with open(path, "w") as f:
                f.write("\n".join(chunk) + "\n")
            owners = burst_owners if phase == "burst" else {**burst_owners, **drain_owners}
            by_file = collections.Counter()
            wal_pages = collections.Counter()
            db_pages = collections.Counter()
            commits = 0
            frames = 0
            last_header = None
            for call, args, res in parse(path):
                if call == "openat" and res >= 0:
                    m = re.search(r'"([^"]*)"', args)
                    fds[res] = m.group(1) if m else "?"
                    continue
                if call != "pwrite64" or res < 0:
                    continue
                fd = int(args.split(",")[0])
                name = fds.get(fd, "")
                if name.endswith("-wal"):
                    kind = "WAL"
                elif name.endswith("queue.sqlite3"):
                    kind = "database (checkpoints)"
                elif name.endswith("-shm"):
                    kind = "shm"
                else:
                    kind = "other (temporary files)"
                by_file[kind] += res
                if kind == "WAL" and res == 24:
                    head = hexbytes(args.split(",", 1)[1])
                    if len(head) >= 8:
                        pg, after = struct.unpack(">II", head[:8])
                        frames += 1
                        wal_pages[owners.get(pg, "(unknown)")] += 1
                        if after:
                            commits += 1
                elif kind.startswith("database") and res == size:
                    off = int(args.rsplit(",", 1)[1])
                    db_pages[owners.get(off // size + 1, "(unknown)")] += 1
            allb = sum(v for k, v in by_file.items() if k != "shm")
            print(f"\n== {phase}: {allb / ok:.0f} B/request written by pwrite64 ({allb / (ok * payload):.2f} per payload byte)")
            for k, v in by_file.most_common():
                print(f"   {k:28} {v / ok:9.0f} B/request  {v / (ok * payload):6.2f}")
            print(f"   WAL: {frames} frames in {commits} commits"
                  + (f", {frames / commits:.1f} frames and {ok / commits if phase == 'burst' else 0:.1f} requests per commit" if commits else ""))
            print("   WAL frames by table/index (pages per request):")
            for k, v in wal_pages.most_common(14):
                print(f"     {k:28} {v / ok:7.2f}  {v * (size + 24) / (ok * payload):6.2f} per payload byte")
            print("   checkpoint copies by table/index (pages per request):")
            for k, v in db_pages.most_common(14):
                print(f"     {k:28} {v / ok:7.2f}  {v * size / (ok * payload):6.2f} per payload byte")
    finally:
        for p in reversed(procs):
            p.kill()
            p.wait()
        if os.environ.get("KEEP"):
            print("kept", work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
