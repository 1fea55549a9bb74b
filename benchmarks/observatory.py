"""Grade the bundled FastAPI shop with Mozilla's HTTP Observatory, offline, on loopback.

    python benchmarks/observatory.py                 # the grade, the score and every test
    python benchmarks/observatory.py --perimeter-off # the same shop without the perimeter
    python benchmarks/observatory.py --install-only  # step 1 alone (what CI runs first)

The recipe:

1. `npm install --ignore-scripts @mdn/mdn-http-observatory@1.4.8` into
   `benchmarks/out/observatory/` (git-ignored). Its install script would download the HSTS
   preload and TLD lists; a stub `conf/hsts-preload.json` (`{}`) stands in for the first, the
   second is not used by a scan.
2. A trustme CA and a certificate for a free loopback address `127.0.0.N`.
3. The shop (`SHOP_DEV_MODE=1`, told `SHOP_PUBLIC_HOST=127.0.0.N`, every other setting at its
   default) under uvicorn twice: on `127.0.0.N:443` with the certificate, and on
   `127.0.0.N:80` in plain HTTP, as a site answers on both ports.
4. The scanner (`src/scan.js`, run by node with `NODE_EXTRA_CA_CERTS` pointing at the CA, so
   its certificate check passes: without it both TLS tests read `*-invalid-cert`) against
   `127.0.0.N`. It prints JSON: the grade, the score and each test's result.

Needs node and npm, and the right to bind ports 80 and 443 (root, or a lowered
`net.ipv4.ip_unprivileged_port_start`). Traffic stays on the loopback interface.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "benchmarks" / "out" / "observatory"
PACKAGE = "@mdn/mdn-http-observatory@1.4.8"
SHOP = "examples.fastapi_shop.app:app"
# The same shop with the perimeter turned off, for comparison (`--perimeter-off`).
PERIMETER_OFF = {
    "LAUNCHREADY_SECURITY_HEADERS": "false",
    "LAUNCHREADY_CSP": "",
    "LAUNCHREADY_HSTS_MAX_AGE_S": "0",
    "LAUNCHREADY_HTTPS_REDIRECT": "false",
}


def package_dir(folder: Path = FOLDER) -> Path:
    return folder / "node_modules" / "@mdn" / "mdn-http-observatory"


def install(folder: Path = FOLDER) -> Path:
    """The scanner's package directory, installed with npm (no install scripts) if missing."""
    package = package_dir(folder)
    if not (package / "src" / "scan.js").exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm", "install", "--ignore-scripts", "--no-audit", "--no-fund",
                "--loglevel=error", "--prefix", str(folder), PACKAGE,
            ],
            check=True,
            timeout=600,
        )  # fmt: skip
    preload = package / "conf" / "hsts-preload.json"
    if not preload.exists():
        preload.write_text("{}\n")
    return package


def free_loopback() -> str | None:
    """A loopback address whose ports 80 and 443 are both free to bind; None when ports
    below 1024 cannot be bound here."""
    for n in range(80, 250):
        address = f"127.0.0.{n}"
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind((address, 80))
                b.bind((address, 443))
            return address
        except PermissionError:
            return None
        except OSError:
            continue
    return None


class Uvicorn:
    """One uvicorn process serving `spec` (the shop by default) on `address:port`, over TLS
    when given `(certificate, key)` paths."""

    def __init__(
        self,
        address: str,
        port: int,
        env: dict[str, str],
        log: Path,
        tls: tuple[str, str] | None = None,
        spec: str = SHOP,
    ) -> None:
        command = [
            sys.executable, "-m", "uvicorn", spec, "--host", address, "--port", str(port),
            "--no-proxy-headers", "--no-server-header", "--log-level", "warning",
        ]  # fmt: skip
        if tls is not None:
            command += ["--ssl-certfile", tls[0], "--ssl-keyfile", tls[1]]
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                command,
                env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait(self, url: str, ca: str) -> None:
        """Until `url` answers below 500 (TLS checked against the CA at `ca`)."""
        import ssl

        import httpx

        context = ssl.create_default_context(cafile=ca)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the shop exited:\n{self.log.read_text(errors='replace')}")
            try:
                if httpx.get(url, verify=context, timeout=1).status_code < 500:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"the shop did not answer on {url}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def certificates(address: str, folder: Path) -> tuple[Path, Path, Path]:
    """A trustme CA and a certificate for `address`: the paths of the CA, chain and key."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert(address)
    ca_pem, cert_pem, key_pem = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    cert.cert_chain_pems[0].write_to_path(str(cert_pem))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(cert_pem), append=True)
    cert.private_key_pem.write_to_path(str(key_pem))
    return ca_pem, cert_pem, key_pem


@contextlib.contextmanager
def serving(address: str, folder: Path, **extra_env: str) -> Iterator[str]:
    """The shop on `address:443` (TLS) and `address:80`; yields the CA's PEM path."""
    ca_pem, cert_pem, key_pem = certificates(address, folder)
    env = {
        "SHOP_DEV_MODE": "1",
        "SHOP_DATA_DIR": str(folder),
        "SHOP_PUBLIC_HOST": address,
        **extra_env,
    }
    shops: list[Uvicorn] = []
    try:
        tls = Uvicorn(address, 443, env, folder / "https.log", (str(cert_pem), str(key_pem)))
        shops.append(tls)
        tls.wait(f"https://{address}/healthz", str(ca_pem))  # seeds the database first
        plain = Uvicorn(address, 80, env, folder / "http.log")
        shops.append(plain)
        plain.wait(f"http://{address}/healthz", str(ca_pem))
        yield str(ca_pem)
    finally:
        for shop in shops:
            shop.stop()


def scan(address: str, ca_pem: str, package: Path) -> dict[str, Any]:
    """Run the scanner against `address`; its JSON answer."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed")
    out = subprocess.run(
        [node, str(package / "src" / "scan.js"), address],
        env={**os.environ, "NODE_EXTRA_CA_CERTS": ca_pem, "NODE_NO_WARNINGS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    try:
        result: dict[str, Any] = json.loads(out.stdout)
    except ValueError:
        raise RuntimeError(f"the scanner answered no JSON:\n{out.stdout}\n{out.stderr}") from None
    if "error" in result:
        raise RuntimeError(f"the scanner failed: {result['error']}")
    return result


def grade(folder: Path | None = None, **extra_env: str) -> dict[str, Any]:
    """Install the scanner if needed, serve the shop, scan it; the scanner's JSON answer."""
    address = free_loopback()
    if address is None:
        raise RuntimeError("ports 80 and 443 cannot be bound here (run as root)")
    package = install()
    with contextlib.ExitStack() as stack:
        if folder is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        ca_pem = stack.enter_context(serving(address, folder, **extra_env))
        return scan(address, ca_pem, package)


def main() -> None:
    if "--install-only" in sys.argv[1:]:
        print(install())
        return
    off = "--perimeter-off" in sys.argv[1:]
    result = grade(**PERIMETER_OFF) if off else grade()
    summary = result["scan"]
    print(f"grade {summary['grade']}, score {summary['score']}")
    for name, test in result["tests"].items():
        print(f"  {name}: {test['result']} ({test.get('scoreModifier', 0):+d})")


if __name__ == "__main__":
    main()
