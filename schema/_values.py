"""Normalising and validating the values people type: names, phones, ID numbers."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from typing import Any

import phonenumbers
from stdnum.cn import ric, uscc
from stdnum.exceptions import ValidationError as StdnumError

from schema._errors import FieldError

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
_HAN = re.compile(r"[\u3400-\u9fff]")


def clean_text(field: str, value: str, *, required: bool = False) -> str | None:
    """Trim and NFC-normalise free text; control characters are refused."""
    value = unicodedata.normalize("NFC", value).strip()
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in value):
        raise FieldError(field, "contains control characters")
    if not value:
        if required:
            raise FieldError(field, "must not be empty")
        return None
    return value


def normalize_mobile(field: str, value: str) -> str:
    """A mainland mobile number in E.164 (`+8613800001111`) from the usual local forms."""
    try:
        number = phonenumbers.parse(value, "CN")
    except phonenumbers.NumberParseException:
        raise FieldError(field, "is not a phone number") from None
    if not phonenumbers.is_valid_number(number) or (
        phonenumbers.number_type(number) != phonenumbers.PhoneNumberType.MOBILE
        and number.country_code == 86
    ):
        raise FieldError(field, "is not a valid mobile number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_phone(field: str, value: str) -> str:
    """Any valid phone number (landline or mobile), stored in E.164."""
    try:
        number = phonenumbers.parse(value, "CN")
    except phonenumbers.NumberParseException:
        raise FieldError(field, "is not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise FieldError(field, "is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(field: str, value: str) -> str:
    """A lower-cased, trimmed e-mail address of plausible shape."""
    value = value.strip().lower()
    if not _EMAIL.match(value):
        raise FieldError(field, "is not an e-mail address")
    return value


def validate_id_number(field: str, value: str) -> str:
    """A resident ID number (居民身份证) with a correct checksum."""
    try:
        return str(ric.validate(value.strip().upper()))
    except (StdnumError, KeyError, ValueError):
        # python-stdnum raises KeyError for some region codes its table lacks a county
        # for; such a number cannot be checked, so it is refused like a bad one.
        raise FieldError(field, "is not a valid resident ID number") from None


def validate_org_code(field: str, value: str) -> str:
    """A unified social credit code (统一社会信用代码) with a correct checksum."""
    try:
        return str(uscc.validate(value.strip().upper()))
    except (StdnumError, KeyError, ValueError):
        raise FieldError(field, "is not a valid unified social credit code") from None


@functools.lru_cache(maxsize=1 << 15)
def search_keys(name: str) -> str:
    """What name search matches: the name, its full pinyin and its initials.

    `张三` → `张三 zhangsan zs`, so `zhangsan`, `zs` and `张` all find it. Remembered
    for the most recent 32,768 names: names repeat (a few hundred surnames, common
    given names), and a sync bringing in a branch's customers computes one per
    customer.
    """
    name = unicodedata.normalize("NFC", name).strip().lower()
    if not _HAN.search(name):
        return name
    # One conversion: a syllable's first letter is its initial (what Style.FIRST_LETTER
    # gives, at half the cost; this runs for every customer a sync brings in).
    syllables = [s for s in _pinyin()(name) if s.strip()]
    return f"{name} {''.join(syllables)} {''.join(s[0] for s in syllables)}"


def load_search_dictionaries() -> None:
    """Load pypinyin's dictionaries now (about 0.3 s) rather than inside the first sync
    or name search that needs them: a serving node calls it at start-up."""
    _pinyin()


@functools.cache
def _pinyin() -> Callable[[str], list[str]]:
    """pypinyin's `lazy_pinyin` (made on first use: its dictionaries take ~0.3 s to load),
    with each toned syllable's conversion to plain letters done once per process rather
    than once per character of every name: that conversion depends on the syllable
    alone (a few hundred of them). 29 -> 13 µs a name, same output
    (tests/test_values.py)."""
    from pypinyin.converter import DefaultConverter
    from pypinyin.core import Pinyin

    class _Converter(DefaultConverter):
        def __init__(self) -> None:
            super().__init__()
            self._plain: dict[tuple[str, Any, bool], str] = {}

        def convert_style(self, han: str, orig_pinyin: str, style: Any, strict: bool,
                          **kwargs: Any) -> str:
            if kwargs:
                return str(super().convert_style(han, orig_pinyin, style, strict, **kwargs))
            key = (orig_pinyin, style, strict)
            plain = self._plain.get(key)
            if plain is None:
                plain = self._plain[key] = str(super().convert_style(
                    han, orig_pinyin, style, strict))
            return plain

    engine = Pinyin(_Converter())

    def convert(name: str) -> list[str]:
        return list(engine.lazy_pinyin(name, errors="ignore"))

    return convert


def mask(column: str, value: str) -> str:
    """What a reader without the key sees, computed at write time: enough to recognise
    a record (`138****5678`), never enough to use it."""
    if column == "mobile":
        digits = value[3:] if value.startswith("+86") else value.lstrip("+")
        return f"{digits[:3]}****{digits[-4:]}" if len(digits) >= 7 else "****"
    if column == "email":
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}" if domain else "***"
    if column in ("id_number", "org_code"):
        return f"{value[:4]}{'*' * max(len(value) - 8, 4)}{value[-4:]}" if len(value) > 8 \
            else "****"
    if column in ("phone", "bank_account"):
        return f"****{value[-4:]}" if len(value) > 4 else "****"
    if column == "address":
        return f"{value[:6]}****"
    if column == "birthday":
        return "****-**-**"
    return "***"
