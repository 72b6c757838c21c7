"""The operator process imports no Kubernetes client library (Kopf would import any that is installed)."""

from __future__ import annotations

import subprocess
import sys

from mailferry_operator.main import UNUSED_CLIENT_LIBRARIES

PROBE = """
import sys
from mailferry_operator.main import block_unused_client_libraries
{block}
import kopf
from mailferry_operator import activities
from mailferry_operator.dnscutover import handlers as dnscutover_handlers
from mailferry_operator.mailmigration import handlers as mailmigration_handlers
print(",".join(m for m in {libs!r} if sys.modules.get(m) is not None))
"""


def _loaded(block: bool) -> list[str]:
    code = PROBE.format(
        block="block_unused_client_libraries()" if block else "", libs=UNUSED_CLIENT_LIBRARIES
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return [m for m in out.strip().split(",") if m]


def test_operator_process_loads_no_client_library() -> None:
    assert _loaded(block=True) == []


def test_without_the_block_kopf_loads_what_is_installed() -> None:
    """Shows the check can fail: in the test venv `kubernetes` (the job runner's) is installed."""
    assert "kubernetes" in _loaded(block=False)
