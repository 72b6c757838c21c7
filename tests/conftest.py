"""Shared pytest setup: real-server fixtures live in tests/fixtures/ (see tests/fixtures/*.py docstrings).

kube, namespace                    Kubernetes API server (etcd + kube-apiserver)   fixtures/kubeapi.py
dovecot_pair, dovecot_factory      Dovecot IMAP servers                              fixtures/dovecot.py
powerdns, powerdns_pair, powerdns_factory   PowerDNS authoritative + API + RFC 2136   fixtures/powerdns.py
prometheus, prometheus_factory     Prometheus + test-data exporter                   fixtures/prometheus.py
smtp_submission                    SMTP submission (aiosmtpd) into Dovecot LMTP      fixtures/smtp.py
radicale_pair, radicale_factory    Radicale CalDAV/CardDAV servers                   fixtures/radicale.py
@pytest.mark.kind                  skipped when no Docker engine runs                fixtures/markers.py
"""

from __future__ import annotations

import sys
from pathlib import Path

# Make ``fixtures`` importable whatever the rootdir/import mode (tests may also import its classes).
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

pytest_plugins = [
    "fixtures.markers",
    "fixtures.kubeapi",
    "fixtures.dovecot",
    "fixtures.powerdns",
    "fixtures.prometheus",
    "fixtures.smtp",
    "fixtures.radicale",
]
