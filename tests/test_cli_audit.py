"""`launchready audit` on repositories: secrets in the tree and history, `.env` files, the
baseline and allow comment, the environment inventory, bad input, and the reports."""

from __future__ import annotations

import json
import os
import random
import string
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from launchready_sdk.cli import main
from launchready_sdk.cli.audit import FINDING_IDS

RNG = random.Random(20261207)


def token(alphabet: str, n: int) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(n))


ALNUM = string.ascii_letters + string.digits
# Test secrets are made at run time, so this file holds none.
AWS_KEY = "AKIA" + token("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
STRIPE_KEY = "sk_live_" + token(ALNUM, 28)
GITHUB_TOKEN = "ghp_" + token(ALNUM, 36)
DB_PASSWORD = token(ALNUM, 10) + "!" + token(ALNUM, 5)
JWT_SECRET = token(ALNUM + "-_", 40)


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    done = subprocess.run(
        ["git", "-C", str(repo), *args], env=env, capture_output=True, check=True, text=True
    )
    return done.stdout


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message, "--allow-empty")
    return git(repo, "rev-parse", "HEAD").strip()


def new_repo(tmp_path: Path, name: str = "repo") -> Path:
    repo = tmp_path / name
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    return repo


def audit(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> dict[str, Any]:
    """Run the command; its exit status, stdout, and the JSON and Markdown it wrote."""
    json_path, md_path = tmp_path / "audit.json", tmp_path / "audit.md"
    status = main(["audit", *args, "--json", str(json_path), "--markdown", str(md_path)])
    out, err = capsys.readouterr()
    return {
        "status": status,
        "out": " ".join(out.split()),
        "err": err,
        "report": json.loads(json_path.read_text()),
        "markdown": md_path.read_text(),
    }


def ids(run: dict[str, Any], severity: str | None = None) -> list[str]:
    return [
        f["id"] for f in run["report"]["findings"] if severity is None or f["severity"] == severity
    ]


def assert_no_secret(run: dict[str, Any], *values: str) -> None:
    for value in values:
        for name in ("out", "err", "markdown"):
            assert value not in run[name], name
        assert value not in json.dumps(run["report"])


@pytest.fixture
def leaky_repo(tmp_path: Path) -> tuple[Path, str]:
    """A repo where a Stripe key was committed, then deleted; and a GitHub token still there."""
    repo = new_repo(tmp_path)
    (repo / "app.py").write_text(f'STRIPE_KEY = "{STRIPE_KEY}"\nprint("shop")\n')
    first = commit_all(repo, "add payments")
    (repo / "app.py").write_text('import os\nSTRIPE_KEY = os.environ["STRIPE_KEY"]\n')
    commit_all(repo, "read the key from the environment")
    (repo / "deploy.py").write_text(f'# token for the CI\nGH = "{GITHUB_TOKEN}"\n')
    commit_all(repo, "deploy script")
    return repo, first


def test_secret_committed_then_deleted_is_a_history_blocker(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, leaky_repo: tuple[Path, str]
) -> None:
    """A deleted secret is found in the history with file, line and commit; exit 1."""
    repo, first = leaky_repo
    run = audit(capsys, tmp_path, "--repo", str(repo))
    assert run["status"] == 1
    history = [f for f in run["report"]["findings"] if f["id"] == "secret-in-history"]
    assert len(history) == 1
    assert history[0]["severity"] == "blocker"
    assert "app.py:1" in history[0]["where"]
    assert first[:12] in history[0]["where"]
    assert "main" in history[0]["where"]
    assert "Rotate" in history[0]["fix"]
    assert "Stripe secret key" in history[0]["title"]
    tree = [f for f in run["report"]["findings"] if f["id"] == "secret-in-tree"]
    assert len(tree) == 1
    assert "deploy.py:2" in tree[0]["where"]
    assert "committed in" in tree[0]["where"]
    assert "Rotate" in tree[0]["fix"]
    assert run["report"]["blockers"] == 2
    assert run["report"]["passed"] is False
    assert_no_secret(run, STRIPE_KEY, GITHUB_TOKEN)


def test_every_output_keeps_secrets_out(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Table, JSON and Markdown name the secret by a short preview only, for every rule."""
    repo = new_repo(tmp_path)
    pem = "-----BEGIN RSA PRIVATE KEY-----\n" + token(ALNUM, 64) + "\n" + token(ALNUM, 64)
    pem += "\n-----END RSA PRIVATE KEY-----\n"
    (repo / "key.pem").write_text(pem)
    (repo / "settings.py").write_text(
        f'AWS = "{AWS_KEY}"\nSIGNING_SECRET: str = "{JWT_SECRET}"\n'
        f'DATABASE_URL = "postgres://shop:{DB_PASSWORD}@db.internal:5432/shop"\n'
    )
    commit_all(repo, "config")
    run = audit(capsys, tmp_path, "--repo", str(repo))
    assert run["status"] == 1
    titles = " ".join(f["title"] for f in run["report"]["findings"])
    for label in ("AWS access key ID", "private key", "hard-coded secret", "hard-coded password"):
        assert label in titles
    body = pem.split("\n")[1]
    assert_no_secret(run, AWS_KEY, JWT_SECRET, DB_PASSWORD, body, pem)


def test_committed_env_files_are_blockers_even_after_deletion(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`.env` tracked now and `.env.production` deleted since are both blockers;
    `.env.example` is not."""
    repo = new_repo(tmp_path)
    (repo / ".env").write_text("DEBUG=1\n")
    (repo / ".env.production").write_text(f"DB_PASSWORD={DB_PASSWORD}\n")
    (repo / ".env.example").write_text("DEBUG=\nDB_PASSWORD=\n")
    commit_all(repo, "env")
    (repo / ".env.production").unlink()
    commit_all(repo, "oops")
    run = audit(capsys, tmp_path, "--repo", str(repo))
    env = {f["title"]: f for f in run["report"]["findings"] if f["id"] == "env-file-committed"}
    assert set(env) == {
        ".env is committed",
        ".env.production was committed (deleted since, still in the history)",
    }
    assert all(f["severity"] == "blocker" for f in env.values())
    assert "secret-in-history" in ids(run)
    assert_no_secret(run, DB_PASSWORD)


def test_baseline_and_allow_comment_accept_known_findings(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, leaky_repo: tuple[Path, str]
) -> None:
    """--write-baseline accepts today's findings; the next run passes; a new secret fails it."""
    repo, _ = leaky_repo
    baseline = tmp_path / "baseline.json"
    run = audit(capsys, tmp_path, "--repo", str(repo), "--write-baseline", str(baseline))
    assert run["status"] == 0
    stored = baseline.read_text()
    assert STRIPE_KEY not in stored
    assert GITHUB_TOKEN not in stored
    assert len(json.loads(stored)["accepted"]) == 2
    run = audit(capsys, tmp_path, "--repo", str(repo), "--baseline", str(baseline))
    assert run["status"] == 0
    assert not [i for i in ids(run) if i.startswith("secret")]
    (repo / "more.py").write_text(
        f'AWS = "{AWS_KEY}"  # launchready:allow\nAWS2 = "{AWS_KEY[:-1]}Q"\n'
    )
    run = audit(capsys, tmp_path, "--repo", str(repo), "--baseline", str(baseline))
    assert run["status"] == 1
    tree = [f for f in run["report"]["findings"] if f["id"] == "secret-in-tree"]
    assert [f["where"] for f in tree] == ["more.py:2; not committed"]


def test_binary_huge_and_non_utf8_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Binary and huge files are skipped with a note; a non-UTF-8 file name is shown escaped."""
    repo = new_repo(tmp_path)
    (repo / "image.bin").write_bytes(b"\x89PNG\0\0" + STRIPE_KEY.encode())
    (repo / "dump.sql").write_bytes(b"-- x\n" * 500_000)
    name = os.fsdecode(b"caf\xe9.py")
    (repo / name).write_bytes(f'TOKEN = "{GITHUB_TOKEN}"\n'.encode() + b"\xff\xfe\n")
    commit_all(repo, "files")
    run = audit(capsys, tmp_path, "--repo", str(repo))
    tree = [f for f in run["report"]["findings"] if f["id"] == "secret-in-tree"]
    assert len(tree) == 1
    assert tree[0]["where"].startswith("caf\\xe9.py:1")
    history = run["report"]["findings"]
    assert not [f for f in history if f["id"] == "secret-in-history"]
    assert "1 binary file not read" in run["out"]
    assert "1 file over 2 MB" in run["out"]
    assert "binary diffs skipped" in run["out"]
    assert_no_secret(run, GITHUB_TOKEN, STRIPE_KEY)


def test_shallow_clone_says_history_is_incomplete(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, leaky_repo: tuple[Path, str]
) -> None:
    """A shallow clone is scanned as far as it goes, and the run says what it missed."""
    repo, _ = leaky_repo
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{repo}", str(clone)], check=True)
    run = audit(capsys, tmp_path, "--repo", str(clone))
    assert "shallow clone" in run["out"]
    assert "shallow clone" in run["markdown"]
    assert "secret-in-history" not in ids(run)
    assert "secret-in-tree" in ids(run)


def test_not_a_git_repository_scans_the_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A plain directory is walked (skipping .venv and node_modules); history is skipped."""
    plain = tmp_path / "plain"
    (plain / "node_modules").mkdir(parents=True)
    (plain / "node_modules" / "x.js").write_text(f'const k = "{STRIPE_KEY}";\n')
    (plain / "config.py").write_text(f'KEY = "{AWS_KEY}"\n')
    run = audit(capsys, tmp_path, "--repo", str(plain))
    assert ids(run) == ["secret-in-tree"]
    assert "config.py:1; not committed" in run["report"]["findings"][0]["where"]
    assert "is not a git repository" in run["out"]


def test_history_on_every_branch(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A secret on a side branch only is found, and the branch is named."""
    repo = new_repo(tmp_path)
    (repo / "README").write_text("shop\n")
    commit_all(repo, "init")
    git(repo, "checkout", "-q", "-b", "experiment")
    (repo / "try.py").write_text(f'api_key = "{STRIPE_KEY}"\n')
    commit_all(repo, "try")
    git(repo, "checkout", "-q", "main")
    run = audit(capsys, tmp_path, "--repo", str(repo))
    history = [f for f in run["report"]["findings"] if f["id"] == "secret-in-history"]
    assert len(history) == 1
    assert "experiment" in history[0]["where"]


def test_env_inventory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Reads are compared with .env.example: missing (soon), optional (later), unread, a
    LAUNCHREADY_ typo, and a secret with a literal default."""
    repo = new_repo(tmp_path)
    (repo / "app.py").write_text(
        "import os\n"
        "from launchready_sdk import LaunchReady\n"
        "from pydantic_settings import BaseSettings, SettingsConfigDict\n"
        'DB = os.environ["DATABASE_URL"]\n'
        'DEBUG = os.getenv("DEBUG", "0")\n'
        'SECRET_KEY = os.environ.get("SECRET_KEY", "dev-secret")\n'
        'REGION = os.environ.get("REGION")\n'
        'NAME = os.getenv(f"{DB}_X")\n'
        "class Shop(BaseSettings):\n"
        '    model_config = SettingsConfigDict(env_prefix="SHOP_")\n'
        "    mail_from: str\n"
        '    currency: str = "EUR"\n'
    )
    (repo / "tests").mkdir()
    (repo / "tests" / "test_app.py").write_text('import os\nos.environ["ONLY_IN_TESTS"]\n')
    (repo / ".env.example").write_text(
        "DATABASE_URL=\n# SECRET_KEY=\nOLD_FLAG=1\nLAUNCHREADY_REDIS_URI=redis://x\n"
    )
    commit_all(repo, "app")
    run = audit(capsys, tmp_path, "--repo", str(repo))
    env = [(f["severity"], f["title"]) for f in run["report"]["findings"]]
    assert ("soon", "REGION is read with no default and not in .env.example") in env
    assert ("soon", "SHOP_MAIL_FROM is read with no default and not in .env.example") in env
    later = [t for s, t in env if s == "later"]
    assert any("DEBUG, SHOP_CURRENCY" in t for t in later)
    assert "1 variable in .env.example never read by the code: OLD_FLAG" in later
    assert (
        "soon",
        "LAUNCHREADY_REDIS_URI in .env.example is not a launchready setting "
        "(did you mean LAUNCHREADY_REDIS_URL?)",
    ) in env
    assert ("soon", "SECRET_KEY falls back to a literal default written in the code") in env
    assert not any("ONLY_IN_TESTS" in t for _, t in env)
    assert "1 read with computed names could not be resolved" in run["out"]
    assert "DATABASE_URL is read" not in run["out"]


def test_no_env_example(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Without a .env.example, one finding lists what the code reads."""
    repo = new_repo(tmp_path)
    (repo / "app.py").write_text('import os\nX = os.environ["PAYMENT_URL"]\n')
    commit_all(repo, "app")
    run = audit(capsys, tmp_path, "--repo", str(repo))
    assert ids(run) == ["env-undocumented"]
    assert "PAYMENT_URL" in run["report"]["findings"][0]["title"]
    assert run["status"] == 0
    assert run["report"]["passed"] is True


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Nothing to audit, bad flags and unwritable report paths exit 2 with a message."""
    cases = [
        [],
        ["--repo", str(tmp_path / "missing")],
        ["--domain", "not a domain"],
        ["--url", "ftp://x.example"],
        ["--domain", "shop.example", "--resolver", "dns.example"],
        ["--domain", "shop.example", "--resolver", "127.0.0.1:99999"],
        ["--dkim-selector", "s1", "--repo", str(tmp_path)],
        ["--repo", str(tmp_path), "--json", str(tmp_path / "no" / "such" / "dir.json")],
        ["--url", "https://shop.example", "--ca-file", str(tmp_path / "none.pem")],
        ["--url", "https://shop.example", "--webhook-path", "webhooks"],
    ]
    for argv in cases:
        try:
            status = main(["audit", *argv])
        except SystemExit as exc:  # argparse rejects bad values itself
            status = int(exc.code or 0)
        assert status == 2, argv
        assert capsys.readouterr().err.strip(), argv


def test_skipped_parts_are_stated(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Each part without its input is listed as not checked, with the reason."""
    repo = new_repo(tmp_path)
    commit_all(repo, "empty")
    run = audit(capsys, tmp_path, "--repo", str(repo))
    for line in ("dns: no --domain given", "tls: no --url given", "slow routes: no --url given"):
        assert line in run["out"]
        assert line in run["markdown"]
    assert run["status"] == 0
    assert run["report"] == {"findings": [], "blockers": 0, "passed": True}


def test_report_shapes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, leaky_repo: tuple[Path, str]
) -> None:
    """JSON has exactly the contract's keys; findings are sorted blocker, soon, later;
    the Markdown is a checklist per severity."""
    repo, _ = leaky_repo
    (repo / "settings.py").write_text('import os\nA = os.environ["A"]\nB = os.getenv("B", "1")\n')
    (repo / ".env.example").write_text("C=\n")
    run = audit(capsys, tmp_path, "--repo", str(repo))
    report = run["report"]
    assert set(report) == {"findings", "blockers", "passed"}
    order = {"blocker": 0, "soon": 1, "later": 2}
    severities = [order[f["severity"]] for f in report["findings"]]
    assert severities == sorted(severities)
    assert set(severities) == {0, 1, 2}
    for f in report["findings"]:
        assert set(f) == {"id", "severity", "title", "where", "fix"}
        assert f["id"] in FINDING_IDS
    md = run["markdown"]
    assert "## Launch blocker (2)" in md
    assert "## Should fix soon (2)" in md
    assert md.count("- [ ] **") == len(report["findings"])
    assert run["out"].index("BLOCKER") < run["out"].index("SOON") < run["out"].index("LATER")


def test_history_scan_stops_at_its_budget(tmp_path: Path) -> None:
    """A history scan past its deadline stops, says so, and the part still reports."""
    from launchready_sdk.cli.audit import _secrets
    from launchready_sdk.cli.audit._model import Options

    repo = new_repo(tmp_path)
    for i in range(30):
        (repo / "f.txt").write_text(f"line {i}\n" * 3000)
        commit_all(repo, f"c{i}")
    result = _secrets.run(Options(repo=repo), deadline=time.monotonic() - 1)
    assert any("stopped at the time budget" in s for s in result.skipped)


def test_a_failing_or_stuck_part_does_not_stop_the_others(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A part that raises is reported as failed, one past its budget as not finished; the
    secrets part still reports."""
    import threading

    from launchready_sdk.cli import audit as audit_cli
    from launchready_sdk.cli.audit._model import Options, PartResult

    release = threading.Event()

    def broken(options: Options, deadline: float) -> PartResult:
        raise RuntimeError("resolver exploded")

    def stuck(options: Options, deadline: float) -> PartResult:
        release.wait(10)
        return PartResult()

    real_load = audit_cli._load
    parts = [
        audit_cli._Part("secrets", "repo", 60.0, "_secrets"),
        audit_cli._Part("broken", "repo", 5.0, "broken"),
        audit_cli._Part("stuck", "repo", 0.2, "stuck"),
    ]
    fakes = {"broken": broken, "stuck": stuck}
    monkeypatch.setattr(audit_cli, "_PARTS", tuple(parts))
    monkeypatch.setattr(audit_cli, "_load", lambda part: fakes.get(part.module) or real_load(part))
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.py").write_text(f'KEY = "{AWS_KEY}"\n')
    try:
        findings, skipped, _, _ = audit_cli.audit(Options(repo=plain))
    finally:
        release.set()
    assert [f.id for f in findings] == ["secret-in-tree"]
    assert skipped["broken"] == ["failed: RuntimeError: resolver exploded"]
    assert skipped["stuck"] == ["did not finish within its 0.2 s budget"]
