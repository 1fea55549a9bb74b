"""Reports for CI: JUnit XML (one test case per route) and a per-second CSV series.

`render_junit(report)` makes the bench read like a test run: a `<testsuites>` holding one
`<testsuite>`, one `<testcase>` per route named after it (its `time` is the route's p95 in
seconds), a `<failure>` with the reasons and the route's notes when it missed its bar, and
`<skipped>` when none of its requests was measured. Misses that belong to no route (a SQL
statement over its budget, a generator that could not hold the rate, nothing measured) are a
test case of their own, `launch bar`, so a CI system that counts failures counts them too; a
run the bench itself could not judge (exit status 3) has an `<error>` there instead.

`render_csv(report)` writes one row per route per second of the measured window, plus the
`overall` rows: `second,route,requests_per_s,p50_ms,p95_ms,errors`.
"""

from __future__ import annotations

import csv
import datetime
import io
from collections.abc import Mapping
from typing import Any
from xml.etree import ElementTree as ET

CLASSNAME = "launchready.bench"
RUN_CASE = "launch bar"


def _seconds(ms: float | None) -> str:
    return "0" if ms is None else f"{ms / 1000:.6f}"


def _timestamp(started_at: str | None) -> str:
    """ISO 8601 in UTC without an offset, as JUnit readers expect (`2026-12-07T08:00:00`)."""
    try:
        moment = datetime.datetime.fromisoformat(started_at or "")
    except ValueError:
        moment = datetime.datetime.now(datetime.UTC)
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="seconds")


def _route_notes(name: str, notes: list[str]) -> list[str]:
    return [n for n in notes if n.startswith(f"{name}: ")]


def _summary(entry: Mapping[str, Any], keys: list[str]) -> str:
    figures = ", ".join(
        f"{key.removesuffix('_ms').replace('_', '.')} {entry[key]:.1f} ms"
        for key in keys
        if entry.get(key) is not None
    )
    return f"count {entry['count']}, errors {entry['errors']}" + (f", {figures}" if figures else "")


def render_junit(report: Mapping[str, Any]) -> str:
    """The report as JUnit XML."""
    notes = list(report.get("notes") or [])
    route_failures = {
        f"{name}: {reason}" for name, e in report["routes"].items() for reason in e["failures"]
    }
    run_failures = [f for f in report["failures"] if f not in route_failures]
    internal = bool((report.get("generator") or {}).get("internal_errors"))
    keys = list(report.get("percentiles") or ["p50_ms", "p95_ms", "p99_ms"])
    cases = len(report["routes"]) + 1
    failed = sum(1 for e in report["routes"].values() if e["passed"] is False)
    failed += 1 if run_failures and not internal else 0
    skipped = sum(1 for e in report["routes"].values() if e["passed"] is None)
    duration = str((report.get("load") or {}).get("duration_s", 0.0))
    counts = {
        "tests": str(cases),
        "failures": str(failed),
        "errors": str(1 if internal else 0),
        "skipped": str(skipped),
        "time": duration,
    }
    root = ET.Element("testsuites", {"name": "launchready bench", **counts})
    suite = ET.SubElement(
        root,
        "testsuite",
        {
            "name": f"launchready bench: {report.get('scenario', '')}",
            **counts,
            "timestamp": _timestamp(report.get("started_at")),
            "hostname": str(report.get("target") or "localhost"),
        },
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("target", report.get("target")),
        ("app", report.get("app")),
        ("load", (report.get("load") or {}).get("description")),
        ("throughput_rps", report.get("throughput_rps")),
    ):
        if value is not None:
            ET.SubElement(properties, "property", {"name": name, "value": str(value)})
    for name, entry in report["routes"].items():
        case = ET.SubElement(
            suite,
            "testcase",
            {"name": name, "classname": CLASSNAME, "time": _seconds(entry.get("p95_ms"))},
        )
        if entry["passed"] is None:
            ET.SubElement(case, "skipped", {"message": "no request of this route was measured"})
        elif entry["passed"] is False:
            reasons = entry.get("failures") or ["missed the launch bar"]
            failure = ET.SubElement(
                case, "failure", {"message": "; ".join(reasons), "type": "LaunchBarMissed"}
            )
            failure.text = "\n".join([*reasons, *_route_notes(name, notes)])
        ET.SubElement(case, "system-out").text = "\n".join(
            [_summary(entry, keys), *_route_notes(name, notes)]
        )
    run = ET.SubElement(suite, "testcase", {"name": RUN_CASE, "classname": CLASSNAME, "time": "0"})
    if internal:
        error = ET.SubElement(
            run, "error", {"message": "the bench itself failed", "type": "BenchError"}
        )
        error.text = "\n".join(report["failures"])
    elif run_failures:
        failure = ET.SubElement(
            run, "failure", {"message": "; ".join(run_failures), "type": "LaunchBarMissed"}
        )
        failure.text = "\n".join(run_failures)
    ET.SubElement(run, "system-out").text = "\n".join(notes or ["no notes"])
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


CSV_HEAD = ("second", "route", "requests_per_s", "p50_ms", "p95_ms", "errors")


def render_csv(report: Mapping[str, Any]) -> str:
    """The per-second series of every route and overall, as CSV."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEAD)
    series = {**report.get("route_timelines", {}), "overall": report.get("timeline", [])}
    for route, seconds in series.items():
        for point in seconds:
            writer.writerow(
                (
                    point["t"],
                    route,
                    point["count"],
                    "" if point["p50_ms"] is None else point["p50_ms"],
                    "" if point["p95_ms"] is None else point["p95_ms"],
                    point["errors"],
                )
            )
    return out.getvalue()
