"""The notice template language: text with `{{ fact }}` placeholders, and nothing else.

Why not Jinja2's SandboxedEnvironment: a sandbox decides at run time which attributes and calls are
safe, and its escapes are a history of CVEs (str.format and attr filter bypasses, 2016-2025). A
ConfigMap is often editable by more people than the operator's ServiceAccount is trusted for. Here
a template can name a fact from a fixed list of plain strings and cannot do anything else: no
expressions, attributes, filters, loops or includes exist, so none can be abused. Anything that looks
like template code (`{{ x.y }}`, `{% ... %}`, `{# ... #}`) is refused with the line it is on.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from mailferry_api.problems import ProblemError

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z][a-z0-9_]*)\s*\}\}")
_CODE = re.compile(r"\{\{.*?(\}\}|$)|\{%.*?(%\}|$)|\{#.*?(#\}|$)", re.S)


class TemplateRefused(ProblemError):
    reason = "TemplateRefused"


class HeaderInjection(ProblemError):
    reason = "HeaderInjection"


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def render(template: str, facts: Mapping[str, str], where: str) -> str:
    """`template` with each `{{ name }}` replaced by `facts[name]`; TemplateRefused names the first
    placeholder that is not a known fact and the first piece of template code, with its line."""
    for match in _PLACEHOLDER.finditer(template):
        if match.group(1) not in facts:
            raise TemplateRefused(
                f"{where} line {_line_of(template, match.start())}: unknown fact {match.group(1)!r} "
                f"(known: {', '.join(sorted(facts))})"
            )
    without_facts = _PLACEHOLDER.sub("", template)
    code = _CODE.search(without_facts)
    if code is not None:
        # the position in the original: search the snippet there
        snippet = code.group(0)[:60]
        pos = template.find(snippet)
        raise TemplateRefused(
            f"{where} line {_line_of(template, max(pos, 0))}: {snippet!r} is template code; templates may "
            "only contain text and {{ fact }} placeholders"
        )
    return _PLACEHOLDER.sub(lambda m: facts[m.group(1)], template)


def check_header(name: str, value: str, where: str) -> str:
    """`value` if it is safe as one header line; HeaderInjection when it holds a line break or another
    control character (a second header or a body would be smuggled in)."""
    for index, char in enumerate(value):
        if char in "\r\n" or unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            kind = (
                "a line break" if char in "\r\n\u2028\u2029\x85" else f"control character U+{ord(char):04X}"
            )
            raise HeaderInjection(
                f"{where}: the {name} header holds {kind} at character {index + 1} "
                f"({value[max(0, index - 30) : index]!r}...): refused (header injection)"
            )
    if len(value) > 900:
        raise HeaderInjection(f"{where}: the {name} header is {len(value)} characters long (at most 900)")
    return value
