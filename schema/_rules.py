"""The classification rule language (domain.md §4), pure: no storage, no HTTP.

A scheme's `rules` is an ordered JSON list; the first rule that matches a customer's
facts gives its class, else the scheme's `default_class`:

    [{"class": "key", "all": [{"fact": "amount_365d_fen", "op": ">=", "value": 10000000}]},
     {"class": "potential", "any": [{"fact": "purchases_365d", "op": "==", "value": 0}]}]

A rule matches when every condition of `all` holds and, if it has `any`, at least one
of those; a rule with neither always matches (a catch-all). A fact may be null
(`recency_days` of a customer who never bought): only `==` / `!=` with a null value
test that; every other comparison with a null fact is false.
"""

from __future__ import annotations

import math
from typing import Any

from schema._errors import FieldError

FACTS: dict[str, str] = {
    "recency_days": "days since the last purchase (null if none)",
    "purchases_365d": "purchases in the last 365 days",
    "amount_365d_fen": "amount bought in the last 365 days, fen",
    "amount_total_fen": "amount bought ever, fen",
    "contribution_share": "share of the last 365 days' amount of all customers in scope, 0..1",
    "complaints_365d": "complaints received in the last 365 days",
    "credit_rejections": "over-limit credit requests rejected",
    "points": "loyalty points balance",
    "relationship_days": "days since registration",
}
"""The measurable facts a rule may test, by name."""

OPS = ("==", "!=", ">", ">=", "<", "<=", "in", "not_in")

TARGETS: dict[str, int] = {
    "customer_class": 32, "abc_class": 8, "lifecycle_stage": 16, "value_class": 16,
    "credit_class": 16,
}
"""The customers column a scheme may set, with the longest class it holds."""

MAX_RULES = 50
MAX_CONDITIONS = 20


def _number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _check_class(field: str, value: Any, target: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FieldError(field, "must be a non-empty class name")
    limit = TARGETS.get(target, 32)
    if len(value.strip()) > limit:
        raise FieldError(field, f"class names of {target} are at most {limit} characters")
    return value.strip()


def _check_condition(field: str, cond: Any) -> dict[str, Any]:
    if not isinstance(cond, dict):
        raise FieldError(field, "must be an object with fact, op and value")
    unknown = set(cond) - {"fact", "op", "value"}
    if unknown:
        raise FieldError(f"{field}.{sorted(unknown)[0]}", "unknown key")
    fact, op, value = cond.get("fact"), cond.get("op"), cond.get("value")
    if fact not in FACTS:
        raise FieldError(f"{field}.fact", f"unknown fact {fact!r}; known: {', '.join(FACTS)}")
    if op not in OPS:
        raise FieldError(f"{field}.op", f"unknown op {op!r}; known: {' '.join(OPS)}")
    if op in ("in", "not_in"):
        if (not isinstance(value, list) or not value or len(value) > 100
                or not all(_number(v) for v in value)):
            raise FieldError(f"{field}.value", f"{op} takes a list of 1-100 numbers")
    elif value is None:
        if op not in ("==", "!="):
            raise FieldError(f"{field}.value", f"null can only be tested with == or !=, not {op}")
    elif not _number(value):
        raise FieldError(f"{field}.value", "must be a number (or null with == / !=)")
    return {"fact": fact, "op": op, "value": value}


def check_rules(target: str, rules: Any, default_class: Any) -> tuple[list[dict[str, Any]],
                                                                       str | None]:
    """Validate a scheme; return its normalised rules and default class. Raises
    FieldError naming the bad field (`target`, `rules[2].all[0].fact`, …)."""
    if target not in TARGETS:
        raise FieldError("target", f"unknown target {target!r}; known: {', '.join(TARGETS)}")
    if not isinstance(rules, list) or len(rules) > MAX_RULES:
        raise FieldError("rules", f"must be a list of at most {MAX_RULES} rules")
    out = []
    for i, rule in enumerate(rules):
        where = f"rules[{i}]"
        if not isinstance(rule, dict):
            raise FieldError(where, "must be an object with class and all/any")
        unknown = set(rule) - {"class", "all", "any", "label"}
        if unknown:
            raise FieldError(f"{where}.{sorted(unknown)[0]}", "unknown key")
        checked: dict[str, Any] = {"class": _check_class(f"{where}.class", rule.get("class"),
                                                         target)}
        for part in ("all", "any"):
            conds = rule.get(part)
            if conds is None:
                continue
            if not isinstance(conds, list) or len(conds) > MAX_CONDITIONS:
                raise FieldError(f"{where}.{part}",
                                 f"must be a list of at most {MAX_CONDITIONS} conditions")
            checked[part] = [_check_condition(f"{where}.{part}[{j}]", c)
                             for j, c in enumerate(conds)]
        label = rule.get("label")
        if label is not None:
            if not isinstance(label, str) or len(label) > 100:
                raise FieldError(f"{where}.label", "must be a text of at most 100 characters")
            checked["label"] = label
        out.append(checked)
    default = None if default_class is None else _check_class("default_class", default_class,
                                                               target)
    if not out and default is None:
        raise FieldError("rules", "a scheme needs at least one rule or a default_class")
    return out, default


def classes_of(rules: list[dict[str, Any]], default_class: str | None) -> list[str]:
    """Every class a scheme can give, in rule order (the default last)."""
    seen: list[str] = []
    for c in [r["class"] for r in rules] + ([default_class] if default_class else []):
        if c not in seen:
            seen.append(c)
    return seen


def _holds(cond: dict[str, Any], facts: dict[str, Any]) -> bool:
    actual, op, value = facts.get(cond["fact"]), cond["op"], cond["value"]
    if op == "==":
        return bool(actual == value)
    if op == "!=":
        return bool(actual != value)
    if actual is None:
        return False
    if op == "in":
        return actual in value
    if op == "not_in":
        return actual not in value
    if op == ">":
        return bool(actual > value)
    if op == ">=":
        return bool(actual >= value)
    if op == "<":
        return bool(actual < value)
    return bool(actual <= value)


def matches(rule: dict[str, Any], facts: dict[str, Any]) -> bool:
    """Whether one rule holds for `facts`."""
    if not all(_holds(c, facts) for c in rule.get("all") or ()):
        return False
    alternatives = rule.get("any")
    return not alternatives or any(_holds(c, facts) for c in alternatives)


def classify(rules: list[dict[str, Any]], default_class: str | None,
             facts: dict[str, Any]) -> tuple[str | None, str]:
    """The class `facts` fall in (first matching rule, else the default) and the reason
    to record in the class history (客户异动)."""
    for i, rule in enumerate(rules):
        if matches(rule, facts):
            return rule["class"], f"rule {i + 1} ({explain(rule)})"
    return default_class, "no rule matched: default class"


def explain(rule: dict[str, Any]) -> str:
    """A rule as a line of text: its label, or its conditions."""
    if rule.get("label"):
        return f"{rule['class']}: {rule['label']}"

    def show(c: dict[str, Any]) -> str:
        return f"{c['fact']} {c['op']} {'null' if c['value'] is None else c['value']}"
    parts = [" and ".join(show(c) for c in rule.get("all") or ())]
    if rule.get("any"):
        parts.append("(" + " or ".join(show(c) for c in rule["any"]) + ")")
    text = " and ".join(p for p in parts if p)
    return f"{rule['class']}: {text or 'always'}"


def _c(fact: str, op: str, value: Any) -> dict[str, Any]:
    return {"fact": fact, "op": op, "value": value}


DEFAULT_SCHEMES: tuple[dict[str, Any], ...] = (
    {"code": "tier", "name": "重点/普通/潜在客户 (key/ordinary/potential)",
     "target": "customer_class", "default_class": "potential", "rules": [
         {"class": "key", "label": "近一年消费满5万元或贡献度≥5%",
          "any": [_c("amount_365d_fen", ">=", 5_000_000), _c("contribution_share", ">=", 0.05)]},
         {"class": "ordinary", "label": "近一年有消费", "all": [_c("purchases_365d", ">=", 1)]},
     ]},
    {"code": "abc", "name": "ABCD 分类 (A 战略 / B 高潜力 / C 品牌 / D 低贡献)",
     "target": "abc_class", "default_class": "D", "rules": [
         {"class": "A", "label": "近一年消费满10万元",
          "all": [_c("amount_365d_fen", ">=", 10_000_000)]},
         {"class": "B", "label": "近一年消费满2万元",
          "all": [_c("amount_365d_fen", ">=", 2_000_000)]},
         {"class": "C", "label": "近一年消费3次以上", "all": [_c("purchases_365d", ">=", 3)]},
     ]},
    {"code": "lifecycle", "name": "生命周期 (潜在/新/稳定/老/流失)",
     "target": "lifecycle_stage", "default_class": "stable", "rules": [
         {"class": "potential", "label": "从未消费", "all": [_c("recency_days", "==", None)]},
         {"class": "lost", "label": "一年以上未消费", "all": [_c("recency_days", ">", 365)]},
         {"class": "new", "label": "建档不满180天", "all": [_c("relationship_days", "<", 180)]},
         {"class": "old", "label": "合作满3年", "all": [_c("relationship_days", ">=", 1095)]},
     ]},
    {"code": "value", "name": "价值分类 (核心/重要/一般/低价值)",
     "target": "value_class", "default_class": "low", "rules": [
         {"class": "core", "label": "近一年消费满10万元或贡献度≥10%",
          "any": [_c("amount_365d_fen", ">=", 10_000_000), _c("contribution_share", ">=", 0.1)]},
         {"class": "important", "label": "近一年消费满2万元",
          "all": [_c("amount_365d_fen", ">=", 2_000_000)]},
         {"class": "general", "label": "近一年有消费", "all": [_c("amount_365d_fen", ">", 0)]},
     ]},
    {"code": "credit", "name": "信用分类 (优质/普通/高危)",
     "target": "credit_class", "default_class": "ordinary", "rules": [
         {"class": "high_risk", "label": "授信被拒2次以上或近一年投诉5次以上",
          "any": [_c("credit_rejections", ">=", 2), _c("complaints_365d", ">=", 5)]},
         {"class": "quality", "label": "累计消费满5万元且无拒绝记录",
          "all": [_c("amount_total_fen", ">=", 5_000_000), _c("credit_rejections", "==", 0)]},
     ]},
)
"""Sensible schemes for a new company (domain.md §4); HQ edits them afterwards."""

DEFAULT_PLANS: tuple[dict[str, Any], ...] = (
    {"scheme": "tier", "cls": "key", "every_days": 30, "care": ["birthday", "holiday"]},
    {"scheme": "tier", "cls": "ordinary", "every_days": 90, "care": ["holiday"]},
    {"scheme": "tier", "cls": "potential", "every_days": 180, "care": []},
    {"scheme": "lifecycle", "cls": "lost", "every_days": 60, "care": ["holiday"]},
)
"""Visit plans per class (domain.md §5): key customers monthly, with birthday care."""
