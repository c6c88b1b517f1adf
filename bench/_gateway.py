"""What the gateway benchmarks share: an nginx mock upstream, a bare Python proxy, `keel serve`, wrk.

    start_nginx      the mock upstream: POST /v1/chat/completions answers a fixed chat.completion
    start_bare       a raw-ASGI pass-through on one uvicorn worker (uvloop, httptools): the baseline
    keel_project     a keel.toml pointing model "mock" (gpt-4o-mini, priced) at the mock
    start_keel       `keel serve` on one worker in that project
    measure          wrk at each of CELLS, with the target's CPU time per request from /proc
    Procs            every child process, each in its own process group, stopped on the way out

Used by gateway_overhead.py and budget_overhead.py; `python bench/_gateway.py KIND PORT UPSTREAM`
serves the bare proxy (how start_bare runs it).
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
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
VENV_BIN = Path(sys.executable).parent
CELLS = [(1, 1), (2, 16)]  # (wrk threads, connections)
CHAT = "/v1/chat/completions"
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
    """wrk and nginx, from Debian's `wrk` and `nginx-light`: installed when running as root, else asked for."""
    if shutil.which("nginx") and shutil.which("wrk"):
        return
    how = "apt-get install -y wrk nginx-light"
    if os.geteuid() != 0:
        sys.exit(f"nginx and wrk are needed: run `sudo {how}`, then run this again.")
    if subprocess.run(how.split(), stdout=subprocess.DEVNULL).returncode:
        sys.exit(f"nginx and wrk are needed and `{how}` failed (see above): run `apt-get update && {how}`, then run this again.")


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
    proc = procs.start([sys.executable, __file__, kind, str(port), upstream + CHAT], log)
    wait_ready(f"http://127.0.0.1:{port}", proc, log)
    return f"http://127.0.0.1:{port}", proc


def keel_project(work: Path, upstream: str, name: str = "keel-project", extra: str = "", top: str = "") -> Path:
    """keel.toml for the mock: pricing_id makes Keel price gpt-4o-mini on the hot path. `extra` is
    appended (tables), `top` goes first (top-level keys)."""
    project = work / name
    project.mkdir()
    (project / "keel.toml").write_text(top + f"""default_model = "mock"
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


def wrk_script(path: Path, request: dict = REQUEST) -> Path:
    """A wrk Lua script that POSTs `request` as JSON."""
    path.write_text(f"wrk.method = \"POST\"\nwrk.body = '{json.dumps(request)}'\n"
                    f"wrk.headers[\"Content-Type\"] = \"application/json\"\n")
    return path


if __name__ == "__main__":
    serve_bare(sys.argv[1], int(sys.argv[2]), sys.argv[3])


def save_figures(name: str, data: dict) -> None:
    """Write a benchmark's figures to bench/out/NAME.json and say where."""
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    print(f"\nfigures written to {path}")


def run_main(main) -> None:  # type: ignore[no-untyped-def]
    """Run a benchmark's main; Ctrl-C stops it with a line, not a traceback (Procs stops the servers)."""
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted: every subprocess was stopped")

