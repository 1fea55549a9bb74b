"""The bundled shops under `launchready bench`'s default scenario, on SQLite and PostgreSQL.

For each shop (FastAPI, Django) and database, boots the shop through `launchready bench --app`
at a stated rate and prints one markdown table per run (client p50/p95/p99 per route, the
server's p95 bucket, the verdict) plus a summary table, for benchmarks/RESULTS.md. PostgreSQL
runs use a fresh database on 127.0.0.1:5432, dropped afterwards.

    python benchmarks/bench_shops.py --rate 100 --duration 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHOPS = {
    "fastapi": "examples.fastapi_shop.app:app",
    "django": "examples.django_shop.asgi:application",
}


def run(shop: str, database: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    env = {**os.environ, "SHOP_DATA_DIR": str(folder / f"{shop}-{database}")}
    name = None
    if database == "postgresql":
        name = f"lrbench_{uuid.uuid4().hex[:10]}"
        subprocess.run(["createdb", "-h", "127.0.0.1", name], check=True)
        env["DATABASE_URL"] = f"postgresql://127.0.0.1:5432/{name}"
    report = folder / f"{shop}-{database}.json"
    command = [
        sys.executable,
        "-m",
        "launchready_sdk.cli",
        "bench",
        "--app",
        SHOPS[shop],
        "--rate",
        str(args.rate),
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
        "--json",
        str(report),
        "--quiet",
    ]
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    finally:
        if name is not None:
            subprocess.run(["dropdb", "-h", "127.0.0.1", "--force", "--if-exists", name])
    if not report.exists():
        raise SystemExit(f"{shop}/{database}: no report\n{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(report.read_text())
    result["exit_code"] = done.returncode
    return result


def _ms(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) else str(value or "")


def route_table(result: dict[str, Any]) -> str:
    lines = [
        "| route | count | errors | p50 ms | p95 ms | p99 ms | server p95 bucket ms | result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in [*result["routes"].items(), ("overall", result["overall"])]:
        bucket = r.get("server_p95_bucket_ms") or ["", ""]
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[r["passed"]]
        lines.append(
            f"| {name} | {r['count']} | {r['errors']} | {_ms(r['p50_ms'])} | {_ms(r['p95_ms'])} | "
            f"{_ms(r['p99_ms'])} | {_ms(bucket[0])}-{_ms(bucket[1])} | {verdict} |"
        )
    queries = result.get("queries") or {}
    if queries:
        worst = next(iter(queries.items()))
        lines.append("")
        lines.append(
            f"{len(queries)} SQL statements; slowest p95 bucket "
            f"{worst[1]['bucket_ms'][0]}-{worst[1]['bucket_ms'][1]} ms: `{worst[0][:90]}`"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--shops", default="fastapi,django")
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    summary = [
        "| shop | database | requests/s | overall p95 ms | worst route p95 ms | errors | "
        "SQL statements over budget | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for shop in args.shops.split(","):
            for database in args.databases.split(","):
                result = run(shop, database, args, Path(tmp))
                print(f"\n### {shop} shop, {database}, {args.rate:g} req/s for {args.duration:g} s")
                print()
                print(route_table(result))
                worst = max((r["p95_ms"] or 0, name) for name, r in result["routes"].items())
                slow_sql = sum(1 for q in (result.get("queries") or {}).values() if not q["passed"])
                summary.append(
                    f"| {shop} | {database} | {result['throughput_rps']:.1f} | "
                    f"{_ms(result['overall']['p95_ms'])} | {_ms(worst[0])} ({worst[1]}) | "
                    f"{result['overall']['errors']} | {slow_sql} | "
                    f"{'PASS' if result['passed'] else 'FAIL'} |"
                )
                for warning in result.get("warnings", []):
                    print(f"\nWarning: {warning}")
    print("\n### Summary\n")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
