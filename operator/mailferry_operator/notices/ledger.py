"""The delivery ledger: who got which notice, kept in one ConfigMap per notice (key: cohort).

One line per recipient: `<address> <state> <unix time> <draft hash> [acked=<unix time>]`. States:
  intent   written *before* the message is handed to the SMTP server; still there after a crash means
           "may or may not have gone out" (in doubt: lookup.py looks for its Message-ID)
  sent     the SMTP server accepted it (or it was found in the mailbox)
  bounced  the SMTP server refused the recipient for good (5xx), or a delivery status notification
           said so later (inbound.py)
`acked=` marks a recipient who replied to the notice (inbound.py): once per recipient, whatever they send.
A recipient with a line is never sent to again, except an `intent` found nowhere after the grace time.
10,000 recipients take ~600 KB (~770 KB had they all replied) of a notice's ConfigMap (the limit is 1 MiB).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from ..mailmigration.naming import fit

State = Literal["intent", "sent", "bounced"]
STATES: tuple[State, ...] = ("intent", "sent", "bounced")


@dataclass(frozen=True)
class Entry:
    state: State
    at: float
    hash: str = ""
    acked: float = 0.0  # when the recipient's reply was read (0: no reply)


Book = dict[str, Entry]  # address (lower case) -> entry


def parse(text: str) -> Book:
    book: Book = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] in STATES:
            try:
                at = float(parts[2])
            except ValueError:
                continue
            state = cast(State, parts[1])  # one of STATES, checked above
            digest = parts[3] if len(parts) > 3 and "=" not in parts[3] else ""
            acked = next((p[6:] for p in parts[3:] if p.startswith("acked=")), "0")
            try:
                book[parts[0].lower()] = Entry(state, at, digest, float(acked))
            except ValueError:
                book[parts[0].lower()] = Entry(state, at, digest)
    return book


def render(book: Book) -> str:
    return "".join(
        f"{addr} {e.state} {int(e.at)} {e.hash}{f' acked={int(e.acked)}' if e.acked else ''}\n"
        for addr, e in sorted(book.items())
    )


def configmap_name(plan: str, notice: str) -> str:
    return fit(f"{plan}-notice-{notice}", plan, notice, limit=253)
