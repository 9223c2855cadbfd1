"""A bounded load test of the HTTP service on loopback.

Starts ``loopwise serve`` on a free local port (unless ``--url`` points at a running one),
then ``--clients`` concurrent clients send ``--rate`` rank requests per second in total (open
loop: requests leave on schedule whether or not earlier ones returned), each with
``--candidates`` candidates, and report the reward of each decision. Stops after
``--seconds``. Prints requests/s, p50/p95/p99 latency for rank and for reward, and errors.

Run: ``python -m experiments.benchmarks.load_http [--seconds 30 --rate 200]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx  # readiness probe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(token: str, data_dir: str, k: int, access_log: str = "all") -> tuple[subprocess.Popen, str]:
    port = free_port()
    cfg = os.path.join(data_dir, "serve.yaml")
    with open(cfg, "w") as fh:
        fh.write(f"data_dir: {data_dir}/engine\nport: {port}\nmax_candidates: {max(200, k)}\n"
                 f"access_log: {access_log}\n"
                 "engine:\n  policy: lints\n  item_features: 4\n  context_features: [mobile]\n")
    env = {**os.environ, "LOOPWISE_TOKEN": token}
    log = open(os.path.join(data_dir, "serve.log"), "w+b")  # noqa: SIM115 - the server's
    # stderr (its access log) goes to a file: a pipe nobody reads would fill and stall it
    proc = subprocess.Popen([sys.executable, "-m", "experiments.cli", "serve", "--config", cfg],
                            env=env, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    log.seek(0)
    raise RuntimeError("the server did not start: " + log.read().decode()[-2000:])


async def run(url: str, token: str, rate: float, seconds: float, clients: int, k: int) -> dict:
    """Open-loop load with aiohttp (a lighter client than httpx: the load generator shares
    this machine's two cores with the server)."""
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"}
    lat = {"rank": [], "reward": []}
    errors = {"rank": 0, "reward": 0}
    sem = asyncio.Semaphore(clients)
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(url, headers=headers, connector=connector,
                                     timeout=timeout) as client:
        async def one(i: int) -> None:
            body = {"user_id": f"u{i % 500}", "contextFeatures": [{"mobile": i % 2}],
                    "actions": [{"id": f"i{(i * 7 + j) % 1000}", "topics": [f"t{j % 10}"],
                                 "features": [j / k, (i % 3) / 3, 1.0, 0.5]} for j in range(k)]}
            async with sem:
                t0 = time.perf_counter()
                try:
                    async with client.post("/v1/rank", json=body) as r:
                        ok = r.status == 200
                        payload = await r.json() if ok else None
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    ok = False
                lat["rank"].append(time.perf_counter() - t0)
                if not ok:
                    errors["rank"] += 1
                    return
                t0 = time.perf_counter()
                try:
                    async with client.post(f"/v1/events/{payload['eventId']}/reward",
                                           json={"value": float(i % 5 == 0)}) as r:
                        ok = r.status == 200
                        await r.read()
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    ok = False
                lat["reward"].append(time.perf_counter() - t0)
                errors["reward"] += not ok

        tasks = []
        start = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):  # open loop: the i-th request leaves at start + i / rate
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return {"lat": lat, "errors": errors, "elapsed": elapsed, "sent": n}


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), None where unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def report(res: dict) -> None:
    print(f"sent {res['sent']} rank requests in {res['elapsed']:.1f} s")
    if res.get("server_cpu") is not None:
        cpu, pairs = res["server_cpu"], len(res["lat"]["rank"])
        print(f"server CPU: {cpu:.1f} s ({cpu / res['elapsed']:.0%} of one core), "
              f"{cpu / max(pairs, 1) * 1e3:.2f} ms per rank+reward pair")
    for kind in ("rank", "reward"):
        xs = sorted(res["lat"][kind])
        if len(xs) < 2:
            print(f"{kind}: no data")
            continue
        q = statistics.quantiles(xs, n=100)
        print(f"{kind:<7} {len(xs) / res['elapsed']:8.1f} req/s  p50 {q[49] * 1e3:6.2f} ms  "
              f"p95 {q[94] * 1e3:6.2f} ms  p99 {q[98] * 1e3:6.2f} ms  errors {res['errors'][kind]}")


def one_run(args) -> dict:
    """One load run on a fresh server (or on ``--url``); the results with the server's CPU."""
    proc = None
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url
        if url is None:
            proc, url = start_server(args.token, tmp, args.candidates, args.access_log)
        elif not url.startswith(("http://127.", "http://localhost", "http://[::1]")):
            raise SystemExit("--url: loopback addresses only")
        try:
            cpu0 = None if proc is None else cpu_seconds(proc.pid)
            res = asyncio.run(run(url, args.token, args.rate, args.seconds, args.clients,
                                  args.candidates))
            cpu1 = None if proc is None else cpu_seconds(proc.pid)
            res["server_cpu"] = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", help="a running server (default: start one on loopback)")
    ap.add_argument("--token", default="load-test-token")
    ap.add_argument("--rate", type=float, default=200.0, help="rank requests per second")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--access-log", default="all", choices=["all", "changes", "off"],
                    help="the started server's access log (to a file)")
    args = ap.parse_args()
    if args.seconds > 300 or args.rate > 5000:
        raise SystemExit("bounded by design: at most 300 s and 5,000 requests/s")
    print(f"target: {args.rate:.0f} rank req/s, {args.candidates} candidates, "
          f"{args.clients} concurrent clients")
    report(one_run(args))


if __name__ == "__main__":
    main()
