"""Gateway overhead benchmark: Keel's gateway against a bare Python proxy, in the same run.

    .venv/bin/python bench/gateway_overhead.py [--quick] [--duration S] [--rounds N] [--targets direct,aiohttp,httpx,keel]

An nginx mock upstream answers POST /v1/chat/completions with a fixed chat.completion; wrk drives
each target at concurrency 1 and 16. Every Python target runs on ONE uvicorn worker (uvloop,
httptools). Keel is judged by ratios to the bare aiohttp proxy measured in the same run (the
machine may be shared: absolute figures move, same-run ratios much less). Also written to
bench/out/gateway_overhead.json. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
VENV_BIN = Path(sys.executable).parent
CELLS = [(1, 1), (2, 16)]  # (wrk threads, connections)
CHAT = "/v1/chat/completions"
TARGET_P50_ADDED_MS, TARGET_RATIO = 0.5, 0.50
REQUEST = {"model": "mock", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 16}
RESPONSE = {"id": "chatcmpl-bench", "object": "chat.completion", "created": 1764000000, "model": "gpt-4o-mini-2024-07-18",
            "system_fingerprint": "fp_bench", "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18},
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
                         "logprobs": None, "finish_reason": "stop"}]}



def bare_app(kind: str, upstream: str):
    """A raw-ASGI pass-through: read the body, POST it upstream on ONE shared client, relay status and body."""
    state: dict = {}

    async def app(scope, receive, send):
        if "client" not in state:  # created lazily: it must be made inside the running loop
            if kind == "aiohttp":
                import aiohttp
                state["client"] = aiohttp.ClientSession()
            else:
                import httpx
                state["client"] = httpx.AsyncClient(limits=httpx.Limits(max_connections=100))
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {"content-type": "application/json"}
        if kind == "aiohttp":
            async with state["client"].post(upstream, data=body, headers=headers) as resp:
                status, payload = resp.status, await resp.read()
        else:
            resp = await state["client"].post(upstream, content=body, headers=headers)
            status, payload = resp.status_code, resp.content
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload})

    return app


def serve_bare(kind: str, port: int, upstream: str) -> None:
    import uvicorn
    uvicorn.run(bare_app(kind, upstream), host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False, lifespan="off")



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Procs(list):
    """Every child we start, each in its own process group; all are stopped on exit, error or Ctrl+C."""

    def start(self, cmd: list[str], log: Path, cwd: Path | None = None, env: dict | None = None) -> subprocess.Popen:
        with open(log, "ab") as out:
            self.append(subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        return self[-1]

    def stop(self, proc: subprocess.Popen) -> None:
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            if proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait)
        if proc in self:
            self.remove(proc)

    def stop_all(self) -> None:
        while self:
            self.stop(self[-1])


def wait_ready(base: str, proc: subprocess.Popen, log: Path, path: str = CHAT, timeout: float = 60) -> None:
    """Until `path` answers 200 (a chat POST for CHAT, a GET otherwise); exit with the log if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{base}: the process exited ({proc.returncode}). Its log, {log}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            if http(base, path)[0] == 200:
                return
        time.sleep(0.2)
    sys.exit(f"{base}{path}: no 200 after {timeout:.0f} s. Log: {log}")


def http(base: str, path: str = CHAT) -> tuple[int, bytes]:
    """POST the chat request to CHAT, or GET another path."""
    data = json.dumps(REQUEST).encode() if path == CHAT else None
    try:
        req = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    utime, stime = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13]
    return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")


def ensure_tools() -> None:
    if shutil.which("nginx") and shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        sys.exit("nginx and wrk are needed: run `sudo apt-get install -y wrk nginx-light`, then run this again.")
    subprocess.run(["apt-get", "install", "-y", "wrk", "nginx-light"], check=True, stdout=subprocess.DEVNULL)


def start_nginx(procs: Procs, work: Path) -> str:
    port, body, conf = free_port(), json.dumps(RESPONSE, separators=(",", ":")), work / "nginx.conf"
    conf.write_text(f"""worker_processes 1; daemon off; pid {work}/nginx.pid; error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off; keepalive_requests 10000000;
    client_body_temp_path {work}/body; proxy_temp_path {work}/proxy; fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location = {CHAT} {{
            default_type application/json;
            if ($request_method != POST) {{ return 405; }}
            return 200 '{body}';
        }}
    }}
}}
""")
    log = work / "nginx.log"
    proc = procs.start(["nginx", "-p", str(work), "-e", str(work / "nginx-error.log"), "-c", str(conf)], log)
    wait_ready(f"http://127.0.0.1:{port}", proc, log)
    return f"http://127.0.0.1:{port}"


def start_bare(procs: Procs, work: Path, kind: str, upstream: str) -> tuple[str, subprocess.Popen]:
    port, log = free_port(), work / f"bare-{kind}.log"
    proc = procs.start([sys.executable, __file__, "--serve-bare", kind, "--port", str(port), "--upstream", upstream + CHAT], log)
    wait_ready(f"http://127.0.0.1:{port}", proc, log)
    return f"http://127.0.0.1:{port}", proc


def keel_project(work: Path, upstream: str, name: str = "keel-project", extra: str = "") -> Path:
    """keel.toml for the mock: pricing_id makes Keel price gpt-4o-mini on the hot path."""
    project = work / name
    project.mkdir()
    (project / "keel.toml").write_text(f"""default_model = "mock"
[providers.mock]
type = "openai"
base_url = "{upstream}/v1"
pricing_id = "openai"
[models.mock]
provider = "mock"
model = "gpt-4o-mini"
""" + extra)
    return project


def start_keel(procs: Procs, project: Path) -> tuple[str, subprocess.Popen]:
    port, log = free_port(), project / "keel-serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    proc = procs.start([str(VENV_BIN / "keel"), "serve", "--port", str(port)], log, cwd=project, env=env)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, proc, log, "/healthz")
    status, body = http(base)
    if status != 200:
        sys.exit(f"keel serve answered {status} to a chat request: {body[:500]!r}. Log: {log}")
    return base, proc


def count_traces(db: Path, expected: int, settle: float) -> int | None:
    """Rows in the store's `traces` table, polled until they reach `expected` or `settle` seconds pass."""
    count, deadline = None, time.monotonic() + settle
    while (count is None or count < expected) and time.monotonic() < deadline:
        time.sleep(0.5)
        with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
            count = con.execute("SELECT count(*) FROM traces").fetchone()[0]
    return count


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}[unit]


def run_wrk(url: str, threads: int, conns: int, seconds: float, script: Path) -> dict:
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds:g}s", "--latency", "--timeout", "5s", "-s", str(script), url + CHAT]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    done = re.search(r"(\d+) requests in", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not (pct.keys() >= {"50", "99"} and done and rps):
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"p50_ms": _ms(pct["50"]), "p99_ms": _ms(pct["99"]), "rps": float(rps.group(1)),
            "requests": int(done.group(1)), "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1) if errors else None}


def measure(name: str, base: str, pid: int | None, args: argparse.Namespace, script: Path) -> tuple[dict, int]:
    """Warm up, then measure each cell. Returns the cells and every request wrk completed (warm-ups included)."""
    cells, total = {}, 0
    for threads, conns in CELLS:
        total += run_wrk(base, threads, conns, args.warmup, script)["requests"]
        cpu = cpu_seconds(pid) if pid else 0.0
        cell = run_wrk(base, threads, conns, args.duration, script)
        cell["cpu_us_per_req"] = (cpu_seconds(pid) - cpu) / cell["requests"] * 1e6 if pid else None
        total += cell["requests"]
        cells[conns] = cell
        notes = [f"{cell['cpu_us_per_req']:.0f} us CPU/req"] if pid else []
        notes += [f"!! {cell['non_2xx']} non-2xx"] * bool(cell["non_2xx"]) + [f"!! socket errors: {cell['socket_errors']}"] * bool(cell["socket_errors"])
        print(f"  {name:<8} c={conns:<3} p50 {cell['p50_ms']:.3f} ms  p99 {cell['p99_ms']:.3f} ms  {cell['rps']:>9,.0f} req/s{''.join('  ' + n for n in notes)}", flush=True)
    return cells, total


def median_cells(rounds: list[dict]) -> dict:
    """Each figure's median over the rounds (one round: itself)."""
    med = lambda conns, k: None if rounds[0][conns][k] is None else statistics.median(r[conns][k] for r in rounds)  # noqa: E731
    return {conns: {**{k: med(conns, k) for k in ("p50_ms", "p99_ms", "rps", "cpu_us_per_req")},
                    "non_2xx": sum(r[conns]["non_2xx"] for r in rounds)} for conns in rounds[0]}



def report(results: dict, traces: dict | None) -> list[dict]:
    direct = results.get("direct")
    print(f"\n{'target':<9}{'conc':>5}{'p50 ms':>9}{'p99 ms':>9}{'+p50 ms':>9}{'+p99 ms':>9}{'req/s':>10}{'CPU us/req':>12}")
    for name, cells in results.items():
        for conns, c in cells.items():
            if direct:
                c["added_p50_ms"] = c["p50_ms"] - direct[conns]["p50_ms"]
                c["added_p99_ms"] = c["p99_ms"] - direct[conns]["p99_ms"]
            added = f"{c['added_p50_ms']:>9.3f}{c['added_p99_ms']:>9.3f}" if direct else f"{'-':>9}{'-':>9}"
            cpu = f"{c['cpu_us_per_req']:>12.0f}" if c["cpu_us_per_req"] is not None else f"{'-':>12}"
            print(f"{name:<9}{conns:>5}{c['p50_ms']:>9.3f}{c['p99_ms']:>9.3f}{added}{c['rps']:>10,.0f}{cpu}")
    for name, cells in results.items():
        if any(c["non_2xx"] for c in cells.values()):
            print(f"!! {name} answered non-2xx responses: its figures are not valid")
    checks = []
    bare, keel = results.get("aiohttp"), results.get("keel")
    if bare and keel:
        for conns in (1, 16):
            ratio = keel[conns]["rps"] / bare[conns]["rps"]
            checks.append((f"throughput keel/aiohttp c={conns}", ratio, f">= {TARGET_RATIO:.2f}", ratio >= TARGET_RATIO))
        if direct:
            added = keel[1]["added_p50_ms"]
            checks.append(("added p50 keel vs direct c=1 (ms)", added, f"<= {TARGET_P50_ADDED_MS}", added <= TARGET_P50_ADDED_MS))
        print(f"\nkeel minus bare aiohttp, c=1: p50 {keel[1]['p50_ms'] - bare[1]['p50_ms']:+.3f} ms; "
              f"c=16 CPU/req {keel[16]['cpu_us_per_req'] - bare[16]['cpu_us_per_req']:+.0f} us\n")
    checks += _reliability_checks(results)
    for label, value, target, ok in checks:
        print(f"{label:<36}{value:>8.3f}  target {target:<8} {'PASS' if ok else 'FAIL'}")
    if traces:
        ok = traces["after_stop"] is not None and traces["after_stop"] >= traces["requests"]
        traces["ok"] = ok
        print(f"\nkeel traces: {traces['requests']} requests completed (+ up to {traces['in_flight_max']} cut off in flight "
              f"when wrk stops); in the store {traces['running']} while running (after <= 15 s), {traces['after_stop']} "
              f"after a clean stop: {'OK' if ok else 'TRACES MISSING: RESULT NOT VALID'}")
    return [{"name": n, "value": v, "target": t, "pass": p} for n, v, t, p in checks]


def _reliability_checks(results: dict) -> list[tuple[str, float, str, bool]]:
    """Reliability stages' share of Keel's added CPU per request, and cache hits against the bare proxy."""
    bare, keel, plain, hit = (results.get(n) for n in ("aiohttp", "keel", "norouting", "keel-hit"))
    checks = []
    if bare and keel and plain and bare[16]["cpu_us_per_req"] is not None:
        with_routing = keel[16]["cpu_us_per_req"] - bare[16]["cpu_us_per_req"]
        without = plain[16]["cpu_us_per_req"] - bare[16]["cpu_us_per_req"]
        added = with_routing / without - 1
        checks.append(("reliability stages' added overhead c=16", added, "<= 0.05", added <= 0.05))
    if bare and hit:
        for conns in (1, 16):
            ratio = hit[conns]["rps"] / bare[conns]["rps"]
            checks.append((f"cache hit keel/aiohttp c={conns}", ratio, ">= 0.80", ratio >= 0.80))
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured cell (default 10, max 120)")
    parser.add_argument("--quick", action="store_true", help="3 s cells, 1 s warm-ups")
    parser.add_argument("--rounds", type=int, default=1, help="repeat all targets N times, report medians (default 1)")
    parser.add_argument("--targets", default="direct,aiohttp,httpx,keel,norouting,keel-hit", help="comma-separated subset")
    parser.add_argument("--serve-bare", choices=["aiohttp", "httpx"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        return serve_bare(args.serve_bare, args.port, args.upstream)
    args.duration = 3.0 if args.quick else min(max(args.duration, 1.0), 120.0)
    args.warmup = 1.0 if args.quick else min(3.0, args.duration)
    args.rounds = min(max(args.rounds, 1), 5)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    ensure_tools()
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gw-", dir=OUT))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    procs, runs, traces, load = Procs(), {}, None, [os.getloadavg()[0]]
    try:
        script = work / "chat.lua"
        script.write_text(f"wrk.method = \"POST\"\nwrk.body = '{json.dumps(REQUEST)}'\n"
                          f"wrk.headers[\"Content-Type\"] = \"application/json\"\n")
        upstream = start_nginx(procs, work)
        print(f"nginx mock on {upstream}; {args.duration:g} s per cell after {args.warmup:g} s warm-up, {args.rounds} "
              f"round(s); load average {load[0]:.2f} on {os.cpu_count()} CPUs; work dir {work}", flush=True)
        servers = {"direct": (upstream, None)} if "direct" in targets else {}
        for kind in ("aiohttp", "httpx"):
            if kind == "httpx" and kind in targets and subprocess.run([sys.executable, "-c", "import httpx"], capture_output=True).returncode:
                print("  httpx    skipped: httpx is not importable in this venv")
            elif kind in targets:
                servers[kind] = start_bare(procs, work, kind, upstream)
        if "keel" in targets:
            project = keel_project(work, upstream)
            servers["keel"] = start_keel(procs, project)
        if "norouting" in targets:  # Keel with every reliability stage left out
            servers["norouting"] = start_keel(procs, keel_project(work, upstream, "norouting", "[routing]\nenabled = false\n"))
        scripts = {name: script for name in servers}
        if "keel-hit" in targets:  # deterministic requests: after the first, every one is a cache hit
            servers["keel-hit"] = start_keel(procs, keel_project(work, upstream, "keel-hit"))
            scripts["keel-hit"] = work / "chat-t0.lua"
            scripts["keel-hit"].write_text(script.read_text().replace('"max_tokens": 16', '"max_tokens": 16, "temperature": 0'))
        keel_requests = 1  # the readiness probe
        for _ in range(args.rounds):
            for name, (base, proc) in servers.items():
                cells, total = measure(name, base, proc.pid if proc else None, args, scripts[name])
                runs.setdefault(name, []).append(cells)
                keel_requests += total if name == "keel" else 0
        if "keel" in servers:
            db = project / ".keel" / "keel.db"
            traces = {"requests": keel_requests, "in_flight_max": args.rounds * sum(2 * c for _, c in CELLS), "db": str(db),
                      "running": count_traces(db, keel_requests, settle=15)}
            procs.stop(servers["keel"][1])  # a clean stop lets the recorder flush the rest
            traces["after_stop"] = count_traces(db, keel_requests, settle=10)
    finally:
        procs.stop_all()
    load.append(os.getloadavg()[0])
    results = {name: median_cells(rounds) for name, rounds in runs.items()}
    checks = report(results, traces)
    print(f"load average at start/end: {load[0]:.2f}/{load[1]:.2f} on {os.cpu_count()} CPUs (other work on the machine skews absolute figures)")
    data = {"duration_s": args.duration, "warmup_s": args.warmup, "rounds": args.rounds, "cpus": os.cpu_count(), "loadavg": load,
            "results": {n: {str(c): v for c, v in cells.items()} for n, cells in results.items()},
            "runs": runs, "checks": checks, "traces": traces}
    path = OUT / "gateway_overhead.json"
    path.write_text(json.dumps(data, indent=2))
    print(f"\nfigures written to {path}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted: every subprocess was stopped")
