"""Deterministic customer/contact records for the sync benchmarks.

`customers(n, seed)` streams `(customer, contacts)` pairs: plain dicts whose keys are
columns of `customers` / `contacts` in schema/_entities.py. Same `n` and `seed` give
the same records, byte for byte, on every run (no Faker: it is far too slow at 100k).

Ids are UUIDv7 strings. `uuid_utils.uuid7()` takes its random bits from an unseedable
OS RNG, so by default the ids are laid out as UUIDv7 (48-bit ms timestamp = the
record's `registered_at`, version 7, RFC 4122 variant) with the random bits drawn from
the seeded `random.Random`, and wrapped in `uuid_utils.UUID`. `real_uuid7=True` calls
`uuid_utils.uuid7()` instead (then ids differ between runs; nothing else does).
Timestamps grow with the record index, so ids come in ascending order, as they would
from one branch creating customers over time.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uuid_utils

Record = dict[str, Any]

CUSTOMER_COLUMNS: tuple[str, ...] = (
    "id", "name", "customer_type", "source", "address", "mobile", "email", "industry",
    "customer_class", "lifecycle_stage", "tags", "branch", "department", "owner_id",
    "registered_at", "intention", "agency",
)
CONTACT_COLUMNS: tuple[str, ...] = ("id", "customer_id", "name", "mobile", "title",
                                    "is_primary")
CONTACTS_PER_CUSTOMER = 2
BRANCH = "S001"

SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐"
            "许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢")
GIVEN = ("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀英华"
         "慧建国平刚桂兰霞文辉玉萍红鹏宇浩晨欣怡子轩梓涵")
# Mobile prefixes that libphonenumber accepts as valid CN mobiles.
MOBILE_PREFIXES = ("130", "131", "132", "133", "135", "136", "137", "138", "139", "150",
                   "151", "152", "153", "155", "156", "157", "158", "159", "166", "173",
                   "175", "176", "177", "180", "181", "182", "183", "185", "186", "187",
                   "188", "189", "191", "198", "199")
CITIES = (("上海市", ("黄浦区", "徐汇区", "静安区", "浦东新区", "闵行区", "杨浦区")),
          ("浙江省杭州市", ("西湖区", "上城区", "拱墅区", "滨江区", "余杭区")),
          ("江苏省苏州市", ("姑苏区", "吴中区", "工业园区", "相城区")),
          ("广东省广州市", ("天河区", "越秀区", "海珠区", "番禺区")))
STREETS = ("南京路", "淮海路", "人民路", "解放路", "中山路", "建设路", "文三路", "长江路",
           "延安路", "湖滨路", "东方路", "学院路")
COMPANY_WORDS = ("华泰", "恒通", "鑫源", "宏达", "新锐", "东方", "远航", "金桥", "瑞丰", "联创")
COMPANY_KINDS = ("科技有限公司", "贸易有限公司", "实业有限公司", "餐饮管理有限公司",
                 "建材有限公司")
INDUSTRIES = ("零售", "制造业", "餐饮", "建筑", "信息技术", "物流", "教育")
EMAIL_DOMAINS = ("qq.com", "163.com", "126.com", "sina.com", "outlook.com")
SOURCES = ("walk_in", "call", "own_development", "referral", "agency")
CLASSES = ("key", "ordinary", "potential")
STAGES = ("potential", "new", "stable", "old", "lost")
TAGS = ("高净值", "价格敏感", "老客户", "企业采购", "会员", "线上", "节日礼品")
DEPARTMENTS = ("销售部", "客服部")
TITLES = ("采购经理", "总经理", "财务", "本人", "家属")
START = datetime(2021, 1, 1, tzinfo=UTC)


def _uuid7(rnd: random.Random, ms: int, real: bool) -> str:
    if real:
        return str(uuid_utils.uuid7())
    value = ((ms & (2**48 - 1)) << 80) | (0x7 << 76) | (rnd.getrandbits(12) << 64)
    value |= (0b10 << 62) | rnd.getrandbits(62)
    return str(uuid_utils.UUID(int=value))


def _person(rnd: random.Random) -> str:
    return rnd.choice(SURNAMES) + "".join(rnd.choices(GIVEN, k=rnd.randint(1, 2)))


def _mobile(rnd: random.Random) -> str:
    return f"+86{rnd.choice(MOBILE_PREFIXES)}{rnd.randrange(10**8):08d}"


def customers(n: int, seed: int = 20240601, *, real_uuid7: bool = False
              ) -> Iterator[tuple[Record, list[Record]]]:
    """Yield `n` (customer, [2 contacts]) pairs, deterministic for a given seed."""
    rnd = random.Random(seed)
    owners = [_uuid7(rnd, int(START.timestamp() * 1000), real_uuid7) for _ in range(8)]
    when = START
    for i in range(n):
        when += timedelta(seconds=rnd.randint(1, 1800), milliseconds=rnd.randrange(1000))
        ms = int(when.timestamp() * 1000)
        organisation = rnd.random() < 0.2
        name = (rnd.choice(CITIES)[0][:2] + rnd.choice(COMPANY_WORDS) + rnd.choice(COMPANY_KINDS)
                if organisation else _person(rnd))
        province, districts = rnd.choice(CITIES)
        customer: Record = {
            "id": _uuid7(rnd, ms, real_uuid7),
            "name": name,
            "customer_type": "organisation" if organisation else "person",
            "source": rnd.choice(SOURCES),
            "address": f"{province}{rnd.choice(districts)}{rnd.choice(STREETS)}"
                       f"{rnd.randint(1, 1999)}号",
            "mobile": _mobile(rnd),
            "email": (f"user{i}_{rnd.randrange(10**6)}@{rnd.choice(EMAIL_DOMAINS)}"
                      if rnd.random() < 0.5 else None),
            "industry": rnd.choice(INDUSTRIES) if organisation else None,
            "customer_class": rnd.choices(CLASSES, weights=(1, 5, 3))[0],
            "lifecycle_stage": rnd.choice(STAGES),
            "tags": rnd.sample(TAGS, rnd.randint(0, 2)),
            "branch": BRANCH,
            "department": rnd.choice(DEPARTMENTS),
            "owner_id": rnd.choice(owners),
            "registered_at": when.isoformat(timespec="milliseconds"),
            "intention": rnd.random() < 0.3,
            "agency": rnd.random() < 0.05,
        }
        contacts = [{
            "id": _uuid7(rnd, ms, real_uuid7),
            "customer_id": customer["id"],
            "name": _person(rnd),
            "mobile": _mobile(rnd),
            "title": rnd.choice(TITLES),
            "is_primary": k == 0,
        } for k in range(CONTACTS_PER_CUSTOMER)]
        yield customer, contacts


def write_jsonl(path: Path, n: int, seed: int = 20240601) -> int:
    """Write one `{"customer": …, "contacts": […]}` JSON object per line; return n."""
    with path.open("w", encoding="utf-8") as out:
        for customer, contacts in customers(n, seed):
            out.write(json.dumps({"customer": customer, "contacts": contacts},
                                 ensure_ascii=False, separators=(",", ":")))
            out.write("\n")
    return n
