"""Normalising names, phones and ID numbers (conventions.md: people and organisations)."""

from __future__ import annotations

import pytest

from schema import (
    FieldError,
    clean_text,
    load_search_dictionaries,
    normalize_mobile,
    search_keys,
    validate_id_number,
    validate_org_code,
)


@pytest.mark.parametrize("text", ["138 0000 1111", "13800001111", "+86-138-0000-1111",
                                  "+86 13800001111", "008613800001111"])
def test_mobile_accepts_usual_local_forms(text: str) -> None:
    assert normalize_mobile("mobile", text) == "+8613800001111"


@pytest.mark.parametrize("text", ["12345", "010-12345678", "abc", "1380000111", ""])
def test_mobile_refuses_non_mobiles(text: str) -> None:
    with pytest.raises(FieldError) as err:
        normalize_mobile("mobile", text)
    assert err.value.field == "mobile"


def test_resident_id_checksum() -> None:
    assert validate_id_number("id_number", "11010519491231002x") == "11010519491231002X"
    with pytest.raises(FieldError):
        validate_id_number("id_number", "110105194912310021")


def test_resident_id_that_crashes_python_stdnum_is_refused_cleanly() -> None:
    # python-stdnum raises KeyError for this region code; it must be a field error.
    with pytest.raises(FieldError):
        validate_id_number("id_number", "620201193810225866")


def test_unified_social_credit_code_checksum() -> None:
    assert validate_org_code("org_code", "91110000600037341L") == "91110000600037341L"
    with pytest.raises(FieldError):
        validate_org_code("org_code", "91110000600037341M")


def test_names_are_trimmed_nfc_and_control_free() -> None:
    assert clean_text("name", "  张三 ") == "张三"
    assert clean_text("name", "e\u0301") == "\u00e9"
    with pytest.raises(FieldError):
        clean_text("name", "a\x00b")
    with pytest.raises(FieldError):
        clean_text("name", "   ", required=True)


def test_search_keys_hold_pinyin_and_initials() -> None:
    keys = search_keys("张三丰")
    assert "张三丰" in keys and "zhangsanfeng" in keys and "zsf" in keys
    assert search_keys("Acme Ltd") == "acme ltd"


def test_search_keys_match_plain_pypinyin_on_many_names() -> None:
    """schema._values converts each toned syllable once per process; the keys must be
    what pypinyin's own `lazy_pinyin` and `Style.FIRST_LETTER` give."""
    import random
    import unicodedata

    from pypinyin import Style, lazy_pinyin

    rng = random.Random(7)
    surnames = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓"
                "曹彭曾肖田董袁潘单仇解区朴查")
    given = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英乐行长重发都绿女吕律"
    names = ["".join(rng.choice(surnames) + "".join(rng.choice(given) for _ in range(
        rng.randint(1, 2)))) for _ in range(3000)]
    names += ["单田芳", "曾国藩", "ABC公司", "李 四", "王小明2号", "重庆长乐行贸易有限公司"]
    for name in names:
        text = unicodedata.normalize("NFC", name).strip().lower()
        syllables = [s for s in lazy_pinyin(text, errors="ignore") if s.strip()]
        initials = "".join(s[0] for s in lazy_pinyin(text, style=Style.FIRST_LETTER,
                                                      errors="ignore") if s.strip())
        assert search_keys(name) == f"{text} {''.join(syllables)} {initials}", name


def test_search_dictionaries_load_ahead_of_the_first_name() -> None:
    from schema._values import _pinyin

    load_search_dictionaries()
    assert _pinyin.cache_info().currsize == 1
    assert search_keys("张三") == "张三 zhangsan zs"
