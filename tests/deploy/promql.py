"""The metric and label names a PromQL expression (or a Grafana variable query) refers to.

Not a PromQL parser: enough of the grammar to find names in the expressions of
deploy/grafana and deploy/prometheus, so that a test can compare them with what a live
server exposes. Strings, ranges (``[5m]``), Grafana variables (``$job``) and numbers are set
aside first; what remains that is an identifier not followed by ``(`` and not a keyword is a
metric name. Label names come from matchers (``{code="429"}``) and from the label lists of
``by``, ``without``, ``on``, ``ignoring``, ``group_left`` and ``group_right``.
"""

from __future__ import annotations

import re

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_RANGE = re.compile(r"\[[^\]]*\]")
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_MATCHERS = re.compile(r"\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_LABEL_LIST = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", re.IGNORECASE
)
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$")
_IDENTIFIER = re.compile(r"(?<![\w.:])[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
    | {"by", "without", "on", "ignoring", "group_left", "group_right"}
)


def _expression(query: str) -> tuple[str, set[str]]:
    """A Grafana ``label_values(EXPR, LABEL)`` query as EXPR and {LABEL}; PromQL as it is."""
    wrapped = _LABEL_VALUES.match(query)
    if wrapped:
        return wrapped[1], {wrapped[2]}
    return query, set()


def _bare(expr: str) -> str:
    return _VARIABLE.sub(" ", _RANGE.sub(" ", _STRING.sub('""', expr)))


def metric_names(query: str) -> set[str]:
    expr, _ = _expression(query)
    text = _LABEL_LIST.sub(" ", _MATCHERS.sub(" ", _bare(expr)))
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name = match[0]
        called = text[match.end() :].lstrip().startswith("(")
        if not called and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def label_names(query: str) -> set[str]:
    expr, labels = _expression(query)
    text = _bare(expr)
    for matchers in _MATCHERS.findall(text):
        labels.update(_MATCHER_LABEL.findall(matchers))
    for listed in _LABEL_LIST.findall(text):
        labels.update(name.strip() for name in listed.split(",") if name.strip())
    return labels
