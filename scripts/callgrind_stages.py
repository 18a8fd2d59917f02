"""Summarises callgrind dumps of the receiver (one file per thread, or one for all): the
instructions per accepted request in all and per thread, per stage of the accept path
(inclusive: a function and everything it calls, wherever it was inlined), and the functions
that run the most instructions themselves.

    python3 scripts/callgrind_stages.py ACCEPTED callgrind.out.1 [more files…]
"""
import re
import sys
from collections import defaultdict

# (label, regex on the function name): the inclusive cost of the costliest match is shown.
STAGES = [
    ("HTTP/1 connections (hyper, every handler inside)", r"^hyper::proto::h1::dispatch::Dispatcher<.*>::poll_catch"),
    ("  webhook handler (server::handle)", r"^alertmanager_wechat::server::handle::\{\{closure\}\}$"),
    ("    auth (bearer token)", r"^alertmanager_wechat::server::auth::check_head"),
    ("    body read", r"^alertmanager_wechat::server::read_body::\{\{closure\}\}$"),
    ("    JSON parse (Notification::parse)", r"^alertmanager_wechat::webhook::Notification::parse$"),
    ("    route (Runtime::route)", r"^alertmanager_wechat::runtime::Runtime::route$"),
    ("    fan-out", r"^alertmanager_wechat::delivery::fanout::fan_out$"),
    ("    dedupe admissions (keys, sha256)", r"^alertmanager_wechat::dedupe::admissions$"),
    ("    history records made (record)", r"^alertmanager_wechat::delivery::history::record$"),
    ("    store admission, caller side (JSON encode)", r"^alertmanager_wechat::store::sqlite::encode(_admissions)?$"),
    ("store writer: all SQL of every caller", r"^alertmanager_wechat::store::sqlite::run_writer$"),
    ("  admission (dedupe state, job insert)", r"^alertmanager_wechat::store::sqlite::(admit_in|SqliteStore::admit::\{\{closure\}\}::\{\{closure\}\})$"),
    ("  history records inserted", r"^alertmanager_wechat::store::sqlite::history::(add|.*history_add::\{\{closure\}\}::\{\{closure\}\})$"),
    ("    history prune", r"^alertmanager_wechat::store::sqlite::history::prune$"),
    ("  size check (PRAGMAs)", r"^alertmanager_wechat::store::sqlite::Writer::over_size$"),
    ("  claims (dispatcher)", r"^alertmanager_wechat::store::sqlite::select_jobs$"),
    ("  SQL compiled (sqlite3_prepare)", r"^sqlite3LockAndPrepare$"),
    ("  COMMIT (WAL write)", r"^sqlite3PagerCommitPhaseOne$"),
    ("delivery (dispatcher, workers)", r"^alertmanager_wechat::delivery::worker::Workers::spawn::\{\{closure\}\}$"),
    ("  one delivery (render, send, record)", r"^alertmanager_wechat::delivery::worker::deliver::\{\{closure\}\}$"),
    ("  coalescing (digest scans)", r"^alertmanager_wechat::delivery::digest::coalesce_backlogs::\{\{closure\}\}$"),
    ("memory (malloc, free, realloc)", r"^(malloc|free|realloc|calloc)$"),
]


def parse(path):
    names = {"fl": {}, "fn": {}, "ob": {}}
    selfc = defaultdict(int)
    calls = defaultdict(int)  # (caller, callee) -> inclusive cost of the calls
    fn = None
    pending = None
    total = 0

    def name(kind, field):
        # Names are compressed per kind (files, functions, objects): "(id) name", then "(id)".
        m = re.match(r"\((\d+)\)(?: (.*))?", field)
        if not m:
            return field
        if m.group(2) is not None:
            names[kind][m.group(1)] = m.group(2)
        return names[kind].get(m.group(1), field)

    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                cost = int(parts[1]) if len(parts) > 1 else 0
                if pending is not None:
                    calls[(fn, pending)] += cost
                    pending = None
                else:
                    selfc[fn] += cost
                    total += cost
                continue
            key, _, val = line.partition("=")
            if key == "fn":
                fn = name("fn", val)
            elif key == "cfn":
                pending_name = name("fn", val)
            elif key == "calls":
                pending = pending_name
            elif key in ("fl", "fi", "fe", "cfi", "cfl"):
                name("fl", val)
            elif key in ("ob", "cob"):
                name("ob", val)
    return total, selfc, calls


def main():
    accepted = max(int(sys.argv[1]), 1)
    files = sys.argv[2:]
    total = 0
    selfc = defaultdict(int)
    calls = defaultdict(int)
    threads = []
    for p in files:
        t, s, c = parse(p)
        total += t
        for k, v in s.items():
            selfc[k] += v
        for k, v in c.items():
            calls[k] += v
        label = "other"
        names = set(s) | {k[1] for k in c}
        if any(n.startswith("sqlite3VdbeExec") for n in s):
            label = "store-writer thread (SQLite)"
        elif any("multi_thread::worker::Context::run_task" in n for n in names):
            label = "tokio worker thread (HTTP, handlers, delivery)"
        elif any("blocking::pool" in n for n in names):
            label = "tokio blocking pool"
        threads.append((t, label, p))
    incl = defaultdict(int)
    for f, v in selfc.items():
        incl[f] += v
    for (a, b), v in calls.items():
        if a != b:
            incl[a] += v
    per = lambda v: v / accepted
    print(f"instructions: {total:,} in all, {per(total):,.0f} per accepted request ({accepted} accepted)")
    print()
    if len(threads) > 1:
        print("per thread")
        merged = defaultdict(int)
        for t, label, _ in threads:
            merged[label] += t
        for label, t in sorted(merged.items(), key=lambda x: -x[1]):
            print(f"  {label:<52} {100 * t / total:5.1f}%  {per(t):>9,.0f} per request")
        print()
    print("inclusive, per stage (a stage contains those indented below it)")
    for label, rx in STAGES:
        r = re.compile(rx)
        best = sum(v for f, v in incl.items() if r.search(f)) if rx.startswith("^(malloc") else max(
            (min(v, total) for f, v in incl.items() if r.search(f)), default=0)
        if rx.startswith("^(malloc"):
            best = sum(v for f, v in selfc.items() if re.search(r"^(malloc|free|realloc|calloc|_int_malloc|_int_free|_int_realloc|malloc_consolidate|unlink_chunk.*)$", f))
            label = "memory (malloc, free, realloc: own instructions)"
        print(f"  {label:<52} {100 * best / total:5.1f}%  {per(best):>9,.0f} per request")
    print()
    print("functions by own instructions")
    for f, v in sorted(selfc.items(), key=lambda x: -x[1])[:25]:
        short = f if len(f) <= 96 else f[:95] + "…"
        print(f"  {100 * v / total:5.1f}%  {per(v):>8,.0f}  {short}")


main()
