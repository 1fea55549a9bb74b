"""Mozilla's HTTP Observatory grades the bundled FastAPI shop, offline (recipe and script:
`benchmarks/observatory.py`). Runs wherever node is installed and ports 80 and 443 can be
bound on loopback; CI installs the scanner with npm first (`.ci/run`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmarks import observatory

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("node") is None or shutil.which("npm") is None,
        reason="node and npm are not installed: the HTTP Observatory is a node package",
    ),
]


@pytest.fixture(scope="module")
def address() -> str:
    found = observatory.free_loopback()
    if found is None:
        pytest.skip("ports 80 and 443 cannot be bound here (the Observatory scans those; root)")
    return found


def test_the_shop_grades_a_plus(address: str, tmp_path: Path) -> None:
    """With the SDK's defaults and its public host, the shop scores A+ (115): HTTPS redirect on
    the same host, HSTS for a year, a CSP without unsafe sources, frame-ancestors, a private
    Referrer-Policy, nosniff. Without the CA the same scan reads the certificate as invalid:
    the grader really checks trust."""
    package = observatory.install()
    with observatory.serving(address, tmp_path) as ca_pem:
        result = observatory.scan(address, ca_pem, package)
        untrusted = observatory.scan(address, str(tmp_path / "cert.pem"), package)
    results = {name: test["result"] for name, test in result["tests"].items()}
    assert (result["scan"]["grade"], result["scan"]["score"]) == ("A+", 115), results
    assert results["redirection"] == "redirection-to-https"
    assert results["strict-transport-security"] == "hsts-implemented-max-age-at-least-six-months"
    assert results["content-security-policy"] == "csp-implemented-with-no-unsafe"
    assert results["x-frame-options"] == "x-frame-options-implemented-via-csp"
    assert results["referrer-policy"] == "referrer-policy-private"
    assert results["x-content-type-options"] == "x-content-type-options-nosniff"
    untrusted_results = {name: t["result"] for name, t in untrusted["tests"].items()}
    assert untrusted_results["redirection"] == "redirection-invalid-cert"
    assert untrusted_results["strict-transport-security"] == "hsts-invalid-cert"


def test_without_the_perimeter_the_grade_falls(address: str, tmp_path: Path) -> None:
    """The same shop with the perimeter turned off grades far lower: the oracle tells them
    apart."""
    result = observatory.grade(tmp_path, **observatory.PERIMETER_OFF)
    results = {name: test["result"] for name, test in result["tests"].items()}
    assert result["scan"]["score"] <= 20, results
    assert results["redirection"] == "redirection-missing"
    assert results["content-security-policy"] == "csp-not-implemented"
