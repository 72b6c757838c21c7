"""The Grafana dashboard and the Prometheus alerts reference only metrics the operator (or its ESP event
endpoint) exports.

Also: the dashboard is well-formed Grafana JSON, and the rules pass `promtool check rules` and fire
in `promtool test rules` scenarios."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailferry_operator import metrics
from mailferry_operator.espevents import metrics as esp_metrics
from mailferry_operator.notices import metrics as notice_metrics

# the notices' metrics live on the operator's registry once their module is imported (the operator does)
assert notice_metrics.recipients is not None

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "deploy" / "grafana" / "mailferry.json"
RULES = ROOT / "deploy" / "prometheus" / "prometheusrule.yaml"

PROMQL_WORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
}


def metric_selectors(expr: str) -> set[str]:
    """Metric names an expression selects (label matchers, grouping labels, strings and ranges removed)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # ranges, $__rate_interval
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    names = set()
    for m in re.finditer(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs(d: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.*),\s*\w+\)", q)
            assert m, f"unexpected variable query {q!r}"
            exprs.append(m.group(1))
    return exprs


def alert_rules() -> list[dict[str, Any]]:
    spec = yaml.safe_load(RULES.read_text())["spec"]
    return [r for g in spec["groups"] for r in g["rules"]]


def test_selector_extraction_can_fail() -> None:
    assert metric_selectors('sum by (kind) (rate(foo_total{a="b"}[5m])) > 0 and on (x) bar') == {
        "foo_total",
        "bar",
    }
    assert metric_selectors('max(mailferry_x{state="up"}) / clamp_min(y, 1)') == {"mailferry_x", "y"}


def test_dashboard_metrics_exist_in_the_registry() -> None:
    exported = metrics.metric_names() | esp_metrics.metric_names()
    used = set().union(*(metric_selectors(e) for e in dashboard_exprs(dashboard())))
    assert used, "no metrics found in the dashboard"
    assert used <= exported, f"dashboard uses metrics the operator does not export: {sorted(used - exported)}"


def test_alert_metrics_exist_in_the_registry() -> None:
    exported = metrics.metric_names() | esp_metrics.metric_names()
    used = set().union(*(metric_selectors(r["expr"]) for r in alert_rules()))
    exported |= {"up"}  # Prometheus' own, per scrape target (MailferryOperatorDown)
    assert used <= exported, f"alerts use metrics the operator does not export: {sorted(used - exported)}"


def test_required_alerts_exist() -> None:
    names = {r["alert"] for r in alert_rules()}
    assert {
        "MailferryMigrationStalled",
        "MailferryMigrationLagHigh",
        "MailferryWorkerJobsFailing",
        "MailferryDnsGateFailed",
        "MailferryDnsRollback",
    } <= names
    for r in alert_rules():
        assert r["labels"]["severity"] in {"warning", "critical"}
        assert r["annotations"]["summary"] and r["annotations"]["description"]
    assert {"MailferryOperatorDown", "MailferryDnsWriteErrors"} <= names


def test_every_alert_has_a_runbook() -> None:
    """runbook_url on every alert, pointing at a section of docs/runbooks.md that exists."""
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    anchors = {line[3:].strip().lower() for line in runbooks.splitlines() if line.startswith("## ")}
    base = "https://github.com/mailferry/mailferry/blob/main/docs/runbooks.md#"
    for r in alert_rules():
        url = r["annotations"].get("runbook_url", "")
        assert url.startswith(base), f"{r['alert']}: runbook_url {url!r}"
        assert url[len(base) :] in anchors, f"{r['alert']}: no section {url} in docs/runbooks.md"


def test_dashboard_is_grafana_dashboard_json() -> None:
    d = dashboard()
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", d["uid"])
    assert d["title"] == "mailferry"
    assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36
    assert "id" not in d or d["id"] is None, "a provisioned dashboard must not carry a database id"
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    ids: set[int] = set()
    cells: set[tuple[int, int]] = set()
    titles = []
    for p in d["panels"]:
        assert isinstance(p["id"], int) and p["id"] not in ids
        ids.add(p["id"])
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panel {p['title']!r} overlaps another"
                cells.add((x, y))
        if p["type"] == "row":
            continue
        titles.append(p["title"])
        assert p["type"] in {"timeseries", "stat", "gauge", "bargauge", "table", "state-timeline", "piechart"}
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert p["targets"], f"panel {p['title']!r} has no targets"
        refs = [t["refId"] for t in p["targets"]]
        assert len(set(refs)) == len(refs)
        for t in p["targets"]:
            assert t["expr"].strip()
            assert t["expr"].count("(") == t["expr"].count(")"), t["expr"]
            for var in re.findall(r"\$(\w+)", t["expr"]):
                assert var in variables or var.startswith("__"), f"unknown variable ${var}"
    wanted = ["by phase", "Messages copied", "Bytes", "lag", "fail", "Gate", "DNS phase timeline"]
    wanted += ["Notices sent, bounced, acknowledged", "awaiting approval", "Notice bounce rate"]
    for w in wanted:
        assert any(w.lower() in t.lower() for t in titles), f"no panel about {w!r}"


PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "mailferry.rules.yml"
    path.write_text(yaml.safe_dump(yaml.safe_load(RULES.read_text())["spec"], sort_keys=False))
    return path


def test_promtool_check_rules(rules_file: Path) -> None:
    cp = subprocess.run(
        [PROMTOOL, "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=60
    )
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in cp.stdout


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        yaml.safe_dump({"groups": [{"name": "x", "rules": [{"alert": "X", "expr": "sum by (a (b)"}]}]})
    )
    cp = subprocess.run([PROMTOOL, "check", "rules", str(bad)], capture_output=True, text=True, timeout=60)
    assert cp.returncode != 0


def expected_alert(name: str, labels: dict[str, str], value: str = "", human: str = "") -> dict[str, Any]:
    """exp_alerts entry: the rule's labels and annotations rendered for `labels` (promtool compares both)."""
    rule = next(r for r in alert_rules() if r["alert"] == name)

    def render(text: str) -> str:
        text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)
        text = text.replace("{{ $value | humanizeDuration }}", human)
        return text.replace("{{ $value }}", value)

    return {
        "exp_labels": {**rule["labels"], **labels},
        "exp_annotations": {k: render(v) for k, v in rule["annotations"].items()},
    }


def fires(at: str, name: str, labels: dict[str, str], value: str = "", human: str = "") -> dict[str, Any]:
    """A promtool alert_rule_test: at `at`, `name` fires once with `labels`."""
    return {"eval_time": at, "alertname": name, "exp_alerts": [expected_alert(name, labels, value, human)]}


def silent(at: str, name: str) -> dict[str, Any]:
    """A promtool alert_rule_test: at `at`, `name` does not fire."""
    return {"eval_time": at, "alertname": name, "exp_alerts": []}


def test_alerts_fire_in_promtool_scenarios(rules_file: Path, tmp_path: Path) -> None:
    """`promtool test rules`: the real Prometheus rule engine evaluates the alerts on synthetic series."""
    mm = 'namespace="mail",migration="acme"'
    dc = 'namespace="mail",dnscutover="acme",domain="acme.example"'
    mml = {"namespace": "mail", "migration": "acme"}
    dcl = {"namespace": "mail", "dnscutover": "acme", "domain": "acme.example"}
    mm2 = 'namespace="mail",migration="slow"'
    mml2 = {"namespace": "mail", "migration": "slow"}
    gate = {**dcl, "phase": "Switched", "gate": "in-sync", "type": "syncLag"}
    sc = 'namespace="mail",sendingcutover="acme",domain="acme.example",stream="transactional"'
    scl = {"namespace": "mail", "sendingcutover": "acme", "domain": "acme.example", "stream": "transactional"}
    np = 'namespace="mail",noticeplan="acme",notice="announce"'
    npl = {"namespace": "mail", "noticeplan": "acme", "notice": "announce"}
    tests = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": f'mailferry_migration_condition{{{mm},condition="Stalled"}}',
                        "values": "0 0 1x30",
                    },
                    {"series": f"mailferry_migration_lag_seconds{{{mm}}}", "values": "60 60 7200x40"},
                    {"series": f'mailferry_migration_phase{{{mm},phase="InSync"}}', "values": "1x45"},
                    {"series": f'mailferry_migration_jobs{{{mm},state="failed"}}', "values": "0 0 2x20"},
                    {
                        "series": f'mailferry_dnscutover_gate_result{{{dc},phase="Switched",gate="in-sync",'
                        f'type="syncLag",result="Failed"}}',
                        "values": "1x10",
                    },
                    {
                        "series": f'mailferry_dnscutover_transitions_total{{{dc},direction="rollback"}}',
                        "values": "0 0 0 1x60",
                    },
                    {"series": f'mailferry_migration_phase{{{mm2},phase="Syncing"}}', "values": "1x60"},
                    {"series": f"mailferry_migration_pending_messages{{{mm2}}}", "values": "5x60"},
                    {"series": f'mailferry_migration_messages{{{mm2},state="copied"}}', "values": "10x60"},
                    {"series": f'mailferry_migration_mailboxes{{{mm},state="failed"}}', "values": "0 1x30"},
                    {"series": f'mailferry_migration_phase{{{mm},phase="Failed"}}', "values": "0 1x30"},
                    {
                        "series": f'mailferry_dnscutover_condition{{{dc},condition="Stalled"}}',
                        "values": "0 1x30",
                    },
                    {
                        "series": 'mailferry_dns_record_writes_total{provider="powerdns",result="error"}',
                        "values": "0 0 1x60",
                    },
                    {"series": 'up{job="mailferry-metrics",instance="10.0.0.1:8080"}', "values": "1 1 0x30"},
                    {"series": 'mailferry_reconcile_errors_total{kind="MailMigration"}', "values": "0+1x40"},
                    {"series": f"mailferry_sendingcutover_hard_stopped{{{sc}}}", "values": "0 0 1x10"},
                    {
                        "series": f'mailferry_sendingcutover_decisions_total{{{sc},decision="StepBack"}}',
                        "values": "0 0 1x60",
                    },
                    {
                        "series": 'mailferry_esp_rejected_total{provider="sendgrid",domain="acme.example",'
                        'reason="bad_signature"}',
                        "values": "0+10x40",
                    },
                    # sales: 3 of 30 bounced (10 %); pilot: 2 of 5 (40 %, but too few to mean anything)
                    {
                        "series": f'mailferry_notice_recipients{{{np},cohort="sales",state="bounced"}}',
                        "values": "0 0 3x30",
                    },
                    {
                        "series": f'mailferry_notice_recipients{{{np},cohort="sales",state="sent"}}',
                        "values": "0 0 27x30",
                    },
                    {
                        "series": f'mailferry_notice_recipients{{{np},cohort="pilot",state="bounced"}}',
                        "values": "0 0 2x30",
                    },
                    {
                        "series": f'mailferry_notice_recipients{{{np},cohort="pilot",state="sent"}}',
                        "values": "0 0 3x30",
                    },
                    # a due draft waiting one more minute every minute
                    {
                        "series": f'mailferry_notice_approval_wait_seconds{{{np},cohort="pilot"}}',
                        "values": "0+60x260",
                    },
                    {
                        "series": 'mailferry_notice_replies_failing{namespace="mail",noticeplan="acme"}',
                        "values": "0 1x40",
                    },
                ],
                "alert_rule_test": [
                    fires("20m", "MailferryMigrationStalled", mml),
                    silent("10m", "MailferryMigrationStalled"),
                    fires("40m", "MailferryMigrationLagHigh", mml, human="2h 0m 0s"),
                    silent("20m", "MailferryMigrationLagHigh"),
                    fires("15m", "MailferryWorkerJobsFailing", mml, value="2"),
                    fires("8m", "MailferryDnsGateFailed", gate),
                    fires("5m", "MailferryDnsRollback", dcl),
                    silent("1m", "MailferryDnsRollback"),
                    # ... and it resolves by itself 30 minutes after the last rollback step.
                    silent("45m", "MailferryDnsRollback"),
                    fires("40m", "MailferryMigrationNoProgress", mml2),
                    silent("20m", "MailferryMigrationNoProgress"),
                    fires("20m", "MailferryMailboxesFailed", mml, value="1"),
                    fires("10m", "MailferryMigrationFailed", mml),
                    fires("20m", "MailferryDnsCutoverStalled", dcl),
                    fires("5m", "MailferryDnsWriteErrors", {"provider": "powerdns"}),
                    silent("1m", "MailferryDnsWriteErrors"),
                    fires("10m", "MailferryOperatorDown", {}),
                    silent("3m", "MailferryOperatorDown"),
                    fires("30m", "MailferryReconcileErrors", {"kind": "MailMigration"}),
                    fires("3m", "MailferrySendingHardStop", scl),
                    silent("1m", "MailferrySendingHardStop"),
                    fires("5m", "MailferrySendingStepBack", scl),
                    silent("50m", "MailferrySendingStepBack"),
                    fires("20m", "MailferryNoticeBounceRateHigh", {**npl, "cohort": "sales"}),
                    silent("10m", "MailferryNoticeBounceRateHigh"),
                    fires("250m", "MailferryNoticeApprovalOverdue", {**npl, "cohort": "pilot"}),
                    silent("200m", "MailferryNoticeApprovalOverdue"),
                    fires("35m", "MailferryNoticeRepliesUnread", {"namespace": "mail", "noticeplan": "acme"}),
                    silent("20m", "MailferryNoticeRepliesUnread"),
                    fires(
                        "30m",
                        "MailferryEspWebhooksRejected",
                        {"provider": "sendgrid", "reason": "bad_signature"},
                    ),
                ],
            }
        ],
    }
    # Every alert fires in some scenario (a rule nobody tested is a rule that may never fire).
    fired = {t["alertname"] for t in tests["tests"][0]["alert_rule_test"] if t["exp_alerts"]}
    assert fired == {r["alert"] for r in alert_rules()}
    path = tmp_path / "tests.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    cp = subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stdout + cp.stderr
