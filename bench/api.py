"""Jobs accepted per second through `POST /v1/jobs` (batches of 1,000), against
`dunning enqueue` of the same number of jobs, in the same run.

    .venv/bin/python bench/api.py [--jobs 20000] [--rounds 2]

Starts a private redis-server and a SQLite contact log; `dunning serve` (uvicorn, one
process) takes the jobs over HTTP on loopback with a key, in batches of 1,000, one
request at a time; `dunning enqueue` takes the same number of jobs (fresh ids) from a
JSON Lines file. Both go through the same intake (validate, record, queue, mark). The
best of `--rounds` for each is printed, and their ratio. Goal: the API reaches >= 70%
of the CLI's rate.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worker.jobs.samples import many  # noqa: E402
from worker.local.ports import free_port  # noqa: E402
from worker.local.redis_server import RedisServer  # noqa: E402

TEMPLATE = json.loads((ROOT / "worker/jobs/samples/portfolio.jsonl").read_text(encoding="utf-8").splitlines()[0])
DUNNING = str(Path(sys.executable).parent / "dunning")
BATCH = 1000


def run(command: list[str], env: dict[str, str], stdin: bytes = b"") -> str:
    done = subprocess.run(command, input=stdin, capture_output=True, env=env, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed: {done.stderr.decode()[-800:]}")
    return done.stdout.decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="dunning-bench-api-"))
    redis = RedisServer(directory / "redis").start()
    port = free_port()
    env = {**os.environ, "DUNNING_DATABASE_URL": f"sqlite:///{directory / 'dunning.db'}",
           "DUNNING_REDIS_URL": redis.url, "DUNNING_SECRET_KEY": "bench-" + "k" * 40,
           "DUNNING_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    run([DUNNING, "migrate"], env)
    key = run([DUNNING, "keys", "create", "bench", "--scopes", "jobs:write"], env).strip().splitlines()[-1]
    server = subprocess.Popen([DUNNING, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        _wait_up(port)
        api_best = cli_best = float("inf")
        for round_ in range(args.rounds):
            jobs = many(TEMPLATE, args.jobs, f"API{round_}", "pre_due_7")
            began = time.perf_counter()
            accepted = 0
            for start in range(0, len(jobs), BATCH):
                body = json.dumps({"jobs": jobs[start:start + BATCH]}, ensure_ascii=False).encode()
                request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/jobs", data=body, method="POST",
                                                 headers={"Authorization": f"Bearer {key}",
                                                          "Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=300) as answer:
                    accepted += len(json.loads(answer.read())["accepted"])
            api_best = min(api_best, time.perf_counter() - began)
            assert accepted == args.jobs, f"the API accepted {accepted} of {args.jobs}"
            lines = "\n".join(json.dumps(j, ensure_ascii=False)
                              for j in many(TEMPLATE, args.jobs, f"CLI{round_}", "pre_due_7")).encode()
            began = time.perf_counter()
            said = run([DUNNING, "enqueue", "-"], env, lines)
            cli_best = min(cli_best, time.perf_counter() - began)
            assert said.startswith(f"{args.jobs} queued"), said
    finally:
        server.terminate()
        server.wait(timeout=30)
        redis.stop()
    api_rate, cli_rate = args.jobs / api_best, args.jobs / cli_best
    print(f"{args.jobs} jobs, best of {args.rounds} rounds each")
    print(f"POST /v1/jobs (batches of {BATCH}): {api_rate:,.0f} jobs/s ({api_best:.1f} s)")
    print(f"dunning enqueue:                  {cli_rate:,.0f} jobs/s ({cli_best:.1f} s, process start included)")
    print(f"ratio: {api_rate / cli_rate:.2f}   goal >= 0.70 {'met' if api_rate / cli_rate >= 0.7 else 'NOT met'}")


def _wait_up(port: int) -> None:
    from worker.local.ports import answering

    if not answering(f"http://127.0.0.1:{port}/v1/openapi.json", 30):
        raise SystemExit("dunning serve did not start")


if __name__ == "__main__":
    main()
