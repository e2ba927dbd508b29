"""PII detection and policies: detectors, transforms, the report, and what never leaks."""

from __future__ import annotations

import hashlib
import hmac
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlplane.datasets import pii
from mlplane.datasets.pii import (
    KINDS,
    POLICIES,
    ColumnFinding,
    PiiPolicy,
    PiiReport,
    PiiScanner,
    detect_columns,
    parse_policy,
)
from mlplane.errors import InvalidInput

KEY = b"k" * 32


def _scan(
    columns: dict[str, pa.Array | list],
    policy: object = None,
    *,
    key: bytes = KEY,
    file: str = "t.csv",
    drop: tuple[str, ...] = (),
) -> tuple[pa.RecordBatch, PiiReport, PiiScanner]:
    batch = pa.record_batch(
        {k: v if isinstance(v, pa.Array) else pa.array(v, pa.string()) for k, v in columns.items()}
    )
    scanner = PiiScanner(batch.schema, parse_policy(policy), hmac_key=key, drop_columns=drop)
    out = scanner.process(batch, file=file)
    return out, scanner.report(), scanner


def _kinds(text: str) -> dict[str, int]:
    """Kinds detected in one cell of a column named ``notes`` (no name hint)."""
    _, report, _ = _scan({"notes": [text]})
    return report.columns[0].kinds if report.columns else {}


def _masked(text: str) -> str:
    out, _, _ = _scan({"notes": [text]}, "mask")
    return str(out.column(0)[0].as_py())


# --- detectors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "john.doe@example.com",
        "write to Jane+news@mail.example.co.uk today",
        "a_b-c%d@sub-domain.example.org",
    ],
)
def test_email_found(text: str) -> None:
    assert _kinds(text) == {"email": 1}


@pytest.mark.parametrize("text", ["@handle", "user@localhost", "a@b", "mail me at home", "x@.com"])
def test_email_not_found(text: str) -> None:
    assert _kinds(text) == {}


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1111",
        "card 4111-1111-1111-1111 on file",
        "5500000000000004",
        "378282246310005",  # Amex, 15 digits
        "3782 822463 10005",  # Amex as printed
        "6011111111111117",
        "2223000048400011",  # Mastercard 2-series
        "30569309025904",  # Diners, 14 digits
        "4111 1111 1111 1111 123",  # followed by the CVV
    ],
)
def test_card_found(text: str) -> None:
    assert _kinds(text) == {"credit_card": 1}
    assert "1111 1111" not in _masked(text) and "[CREDIT_CARD]" in _masked(text)


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # Luhn fails
        "4111111111111112",
        "5500000000000005",
        "1718000000000",  # epoch milliseconds
        "0000000000000000",  # Luhn-valid, no network issues it
        "13008734-9150-9951-5abe-82cdc3e865ff",  # UUID
        "2024-01-15 2024-01-16",
        "41111111111111111111",  # 20 digits
    ],
)
def test_card_not_found(text: str) -> None:
    assert "credit_card" not in _kinds(text)


VALID_IBANS = [
    "GB82 WEST 1234 5698 7654 32",
    "DE89 3704 0044 0532 0130 00",
    "FR14 2004 1010 0505 0001 3M02 606",
    "NL91ABNA0417164300",
    "BE68539007547034",
    "ES9121000418450200051332",
    "CH9300762011623852957",
    "NO9386011117947",
    "IT60X0542811101000000123456",
    "PL61109010140000071219812874",
]


@pytest.mark.parametrize("iban", VALID_IBANS)
def test_iban_found_and_not_counted_as_card_or_phone(iban: str) -> None:
    assert _kinds(f"pay to {iban} please") == {"iban": 1}
    assert _masked(f"pay to {iban} please") == "pay to [IBAN] please"


@pytest.mark.parametrize(
    "text",
    [
        "GB83 WEST 1234 5698 7654 32",  # check digits wrong
        "DE89 3704 0044 0532 0130 01",  # one digit changed
        "NL91ABNA0417164301",
        "XX82WEST12345698765432",  # not a country
        "DE8937040044053201",  # too short for DE
    ],
)
def test_iban_not_found(text: str) -> None:
    assert "iban" not in _kinds(text)


@pytest.mark.parametrize("text", ["123-45-6789", "SSN: 078-05-1120.", "899-99-9999", "665-01-0001"])
def test_ssn_found(text: str) -> None:
    assert _kinds(text) == {"us_ssn": 1}


@pytest.mark.parametrize(
    "text",
    [
        "000-12-3456",
        "666-12-3456",
        "900-12-3456",
        "999-12-3456",
        "123-00-4567",
        "123-45-0000",
        "12-345-6789",
        "123456789",
    ],
)
def test_ssn_invalid_ranges_not_found(text: str) -> None:
    assert "us_ssn" not in _kinds(text)


@pytest.mark.parametrize(
    "text",
    [
        "+1 415 555 2671",
        "+44 20 7946 0958",
        "+44 (0)20 7946 0958",
        "+33 1 23 45 67 89",
        "+14155552671",
        "+1-415-555-2671",
        "(415) 555-2671",
        "call 415-555-2671 now",
        "415.555.2671",
        "020 7946 0958",
        "01 23 45 67 89",
        "030 12345678",
        "089/1234567",
    ],
)
def test_phone_found(text: str) -> None:
    assert _kinds(text) == {"phone": 1}


@pytest.mark.parametrize(
    "text",
    [
        "12345",
        "1234567890",
        "98765432101",
        "id 100234",
        "2024-01-15",
        "15.01.2024",
        "01.02.2024",
        "05/01/2024",
        "1,234.56",
        "-1234567.89",
        "+12.5%",
        "+100.00 -50.00",
        "ORD-2024-000123",
        "3.14159265",
        "12:30:45",
        "v1.2.3",
        "02134-1234",  # ZIP+4
    ],
)
def test_phone_not_found_in_numbers_amounts_dates_ids(text: str) -> None:
    assert _kinds(text) == {}


@pytest.mark.parametrize(
    "text",
    [
        "192.168.1.1",
        "from 10.0.0.255:8080",
        "255.255.255.255",
        "2001:db8::8a2e:370:7334",
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        "fe80::1",
    ],
)
def test_ip_found(text: str) -> None:
    assert _kinds(text) == {"ip_address": 1}


@pytest.mark.parametrize(
    "text", ["256.1.1.1", "192.168.1.256", "1.2.3", "12:30:45", "std::vector", "a::b", "10.1.300.4"]
)
def test_ip_not_found(text: str) -> None:
    assert "ip_address" not in _kinds(text)


def test_several_kinds_in_one_cell_each_counted_once_per_cell() -> None:
    text = "a@x.io, b@y.io, 123-45-6789 from 10.0.0.1 or +44 20 7946 0958"
    assert _kinds(text) == {"email": 1, "us_ssn": 1, "ip_address": 1, "phone": 1}
    assert _masked(text) == "[EMAIL], [EMAIL], [US_SSN] from [IP_ADDRESS] or [PHONE]"


def test_matches_never_span_two_cells() -> None:
    out, report, _ = _scan(
        {"notes": ["4111 1111", "1111 1111", "john", "@example.com", "192.168", ".1.1"]}, "mask"
    )
    assert report.columns == []
    assert out.column(0).to_pylist()[0] == "4111 1111"


# --- property tests -------------------------------------------------------------------------

_FILLER = st.text(alphabet="abcdefghij klmnop", max_size=12)


def _luhn_complete(body: str) -> str:
    for check in "0123456789":
        if pii._luhn(body + check):
            return body + check
    raise AssertionError("unreachable")


@st.composite
def _cards(draw: st.DrawFn) -> tuple[str, str]:
    """A Luhn-valid card number (digits) and how it is written."""
    prefix, length = draw(
        st.sampled_from(
            [
                ("4", 16),
                ("51", 16),
                ("55", 16),
                ("2221", 16),
                ("6011", 16),
                ("3530", 16),
                ("34", 15),
                ("37", 15),
            ]
        )
    )
    body = prefix + "".join(
        draw(
            st.lists(
                st.sampled_from("0123456789"),
                min_size=length - len(prefix) - 1,
                max_size=length - len(prefix) - 1,
            )
        )
    )
    digits = _luhn_complete(body)
    style = draw(st.sampled_from(["bare", " ", "-"]))
    if style == "bare":
        return digits, digits
    if length == 15:
        return digits, style.join([digits[:4], digits[4:10], digits[10:]])
    return digits, style.join(digits[i : i + 4] for i in range(0, 16, 4))


@settings(max_examples=60, deadline=None)
@given(
    card=_cards(),
    before=_FILLER,
    after=_FILLER,
    position=st.integers(0, 15),
    delta=st.integers(1, 9),
)
def test_luhn_valid_cards_found_single_digit_changes_not(
    card: tuple[str, str], before: str, after: str, position: int, delta: int
) -> None:
    digits, written = card
    text = f"{before} {written} {after}"
    assert _kinds(text) == {"credit_card": 1}
    assert digits[-4:] not in _masked(text)
    # Luhn catches every single-digit error.
    position %= len(digits)
    wrong = digits[:position] + str((int(digits[position]) + delta) % 10) + digits[position + 1 :]
    assert "credit_card" not in _kinds(f"{before} {wrong} {after}")


@st.composite
def _ibans(draw: st.DrawFn) -> str:
    country = draw(
        st.sampled_from(["DE", "GB", "FR", "NL", "ES", "IT", "BE", "CH", "PL", "NO", "SE"])
    )
    length = pii._IBAN_LENGTHS[country]
    bban = "".join(
        draw(
            st.lists(
                st.sampled_from("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
                min_size=length - 4,
                max_size=length - 4,
            )
        )
    )
    numeric = int("".join(str(int(ch, 36)) for ch in bban + country + "00"))
    return f"{country}{98 - numeric % 97:02d}{bban}"


@settings(max_examples=60, deadline=None)
@given(iban=_ibans(), spaced=st.booleans(), position=st.integers(4, 40), delta=st.integers(1, 9))
def test_generated_ibans_found_and_digit_changes_not(
    iban: str, spaced: bool, position: int, delta: int
) -> None:
    def written(s: str) -> str:
        return " ".join(s[i : i + 4] for i in range(0, len(s), 4)) if spaced else s

    assert _kinds(f"to {written(iban)} thanks") == {"iban": 1}
    digits = [i for i, ch in enumerate(iban) if ch.isdigit() and i >= 4]
    if digits:
        i = digits[position % len(digits)]
        wrong = iban[:i] + str((int(iban[i]) + delta) % 10) + iban[i + 1 :]
        assert "iban" not in _kinds(f"to {written(wrong)} thanks")


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 6000),
    planted=st.lists(st.integers(0, 5999), max_size=8),
    nulls=st.lists(st.integers(0, 5999), max_size=8),
)
def test_found_rows_are_exactly_the_planted_ones(
    rows: int, planted: list[int], nulls: list[int]
) -> None:
    values: list[str | None] = [f"order {i} shipped 2024-01-{i % 28 + 1:02d}" for i in range(rows)]
    for i in nulls:
        if i < rows:
            values[i] = None
    expected = sorted({i for i in planted if i < rows})
    for i in expected:
        values[i] = f"mail user{i}@example.com"
    out, report, _ = _scan({"notes": values}, "mask")
    found = report.columns[0] if report.columns else None
    assert (found.rows if found else 0) == len(expected)
    column = out.column(0).to_pylist()
    assert [i for i, v in enumerate(column) if v and "[EMAIL]" in v] == expected
    assert all(column[i] == values[i] for i in range(rows) if i not in expected)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.text(alphabet="0123456789 -.+():@/abfxAZDEB_", max_size=40), min_size=1, max_size=50
    )
)
def test_arrow_and_python_patterns_agree(texts: list[str]) -> None:
    # Candidates are found with RE2 and validated or hashed with Python's re: the two
    # must see the same matches.
    values = pa.array(texts, pa.string())
    for det in pii._DETECTORS:
        found = pc.match_substring_regex(values, det.pattern).to_pylist()
        assert found == [bool(det.py.search(t)) for t in texts], det.kind
        if det.accept is None:
            replaced = pc.replace_substring_regex(values, det.pattern, det.marker).to_pylist()
            assert replaced == [det.py.sub(det.marker, t) for t in texts], det.kind


@pytest.mark.parametrize("policy", ["mask", "hash"])
def test_a_cell_becomes_the_same_whatever_batch_it_is_in(policy: str) -> None:
    # Thousands of hits take the dense path (whole-cell hashing without Python, detector
    # skipping); one cell at a time takes the sparse one. Both must give the same cells.
    rng = np.random.default_rng(3)
    kinds = [
        lambda i: f"user{i % 700}@example.com",
        lambda i: f"USER{i % 700}@Example.com",
        lambda i: f"mail user{i % 50}@example.com or +44 20 7946 {i % 10000:04d}",
        lambda i: f"card 4111 1111 1111 1111 ref {i}",
        lambda i: "nothing to see",
        lambda i: f"ip 10.0.{i % 256}.1",
    ]
    values = [kinds[k](i) for i, k in enumerate(rng.integers(0, len(kinds), 6000))]
    out, report, _ = _scan({"notes": values}, policy)
    sample = rng.choice(len(values), 40, replace=False)
    for i in sample:
        alone, _, _ = _scan({"notes": [values[i]]}, policy)
        assert out.column(0)[int(i)].as_py() == alone.column(0)[0].as_py()
    assert report.columns[0].rows == sum(v != "nothing to see" for v in values)


# --- policies -------------------------------------------------------------------------------

ROWS = {
    "email": ["Ann@Example.com", "bob@example.org", None, "ann@example.com"],
    "notes": ["call +44 20 7946 0958", "nothing here", "card 4111 1111 1111 1111", None],
    "customer_ref": ["C-001", "C-002", "C-001", None],
    "amount": pa.array([1.5, 2.0, 3.25, 4.0]),
}
VALUES = ["Ann@Example.com", "bob@example.org", "7946 0958", "4111 1111", "C-001"]


def test_detect_only_keeps_the_batch_and_reports_unhandled() -> None:
    out, report, scanner = _scan(ROWS)
    assert out.equals(
        pa.record_batch(
            {
                k: (v if isinstance(v, pa.Array) else pa.array(v, pa.string()))
                for k, v in ROWS.items()
            }
        )
    )
    assert not scanner.changed
    assert report.unhandled and report.blocked == []
    assert {c.column: c.action for c in report.columns} == {"email": "none", "notes": "none"}
    assert report.columns[1].kinds == {"phone": 1, "credit_card": 1}


def test_mask_replaces_detected_values_only() -> None:
    out, report, scanner = _scan(ROWS, "mask")
    assert out.column(0).to_pylist() == ["[EMAIL]", "[EMAIL]", None, "[EMAIL]"]
    assert out.column(1).to_pylist() == ["call [PHONE]", "nothing here", "card [CREDIT_CARD]", None]
    assert out.column(2).to_pylist() == ROWS["customer_ref"]  # nothing found, default policy
    assert scanner.changed and not report.unhandled
    assert {c.action for c in report.columns} == {"mask"}


def test_hash_tokens_are_stable_normalised_keyed_and_standard_hmac() -> None:
    out, _, _ = _scan(ROWS, "hash")
    tokens = out.column(0).to_pylist()
    assert tokens[0] == tokens[3] != tokens[1]  # "Ann@Example.com" is "ann@example.com"
    assert tokens[0] == "pii_" + hmac.new(KEY, b"ann@example.com", hashlib.sha256).hexdigest()[:20]
    assert tokens[2] is None
    other, _, _ = _scan(ROWS, "hash", key=b"another key, 32 bytes long......")
    assert other.column(0)[0].as_py() != tokens[0]
    # The same value inside text and alone in a cell, in another column, written otherwise.
    again, _, _ = _scan({"x": ["4111-1111-1111-1111", "from ANN@example.com"]}, "hash")
    notes = out.column(1).to_pylist()
    assert notes[2] == f"card {again.column(0)[0].as_py()}"
    assert again.column(0)[1].as_py() == f"from {tokens[0]}"


def test_long_keys_hash_as_hmac_does() -> None:
    key = bytes(range(100))
    out, _, _ = _scan({"email": ["a@b.io"]}, "hash", key=key)
    assert (
        out.column(0)[0].as_py()
        == "pii_" + hmac.new(key, b"a@b.io", hashlib.sha256).hexdigest()[:20]
    )


def test_hashed_tables_still_join() -> None:
    users = {"email": ["a@x.io", "B@x.io", "c@x.io"], "plan": ["free", "pro", "pro"]}
    orders = {"email": ["b@x.io", "a@x.io", "b@x.io", "z@x.io"], "total": ["1", "2", "3", "4"]}
    hashed_users, _, _ = _scan(users, "hash")
    hashed_orders, _, _ = _scan(orders, "hash", file="orders.csv")
    joined = pa.Table.from_batches([hashed_orders]).join(
        pa.Table.from_batches([hashed_users]), "email"
    )
    raw = pa.table(
        {k: [v.lower() for v in vs] if k == "email" else vs for k, vs in orders.items()}
    ).join(
        pa.table({k: [v.lower() for v in vs] if k == "email" else vs for k, vs in users.items()}),
        "email",
    )
    assert sorted(
        zip(joined["total"].to_pylist(), joined["plan"].to_pylist(), strict=True)
    ) == sorted(zip(raw["total"].to_pylist(), raw["plan"].to_pylist(), strict=True))
    assert not set(joined["email"].to_pylist()) & {"a@x.io", "b@x.io"}


def test_explicit_policy_applies_where_nothing_is_detected() -> None:
    out, report, scanner = _scan(ROWS, {"customer_ref": "hash", "amount": "mask", "notes": "mask"})
    refs = out.column(2).to_pylist()
    assert refs[0] == refs[2] == "pii_" + hmac.new(KEY, b"C-001", hashlib.sha256).hexdigest()[:20]
    assert refs[3] is None
    assert out.column(3).to_pylist() == ["[REDACTED]"] * 4
    assert (
        out.schema.field("amount").type == pa.string() == scanner.output_schema.field("amount").type
    )
    # A cell with PII is masked where found; one without is masked whole.
    assert out.column(1).to_pylist() == ["call [PHONE]", "[REDACTED]", "card [CREDIT_CARD]", None]
    assert out.column(0).to_pylist() == ROWS["email"]  # no default: found, not handled
    found = {c.column: c for c in report.columns}
    assert found["customer_ref"].rows == 0 and found["customer_ref"].action == "hash"
    assert found["email"].action == "none" and report.unhandled


def test_drop_explicit_and_by_drop_columns() -> None:
    out, report, scanner = _scan(ROWS, {"notes": "drop"}, drop=("email", "amount"))
    assert out.schema.names == ["customer_ref"] == scanner.output_schema.names
    assert scanner.changed
    actions = {c.column: (c.action, c.rows) for c in report.columns}
    assert actions == {"email": ("drop", 3), "notes": ("drop", 2), "amount": ("drop", 0)}


def test_explicit_policy_wins_over_drop_columns() -> None:
    out, _, _ = _scan(ROWS, {"email": "hash", "*": "drop"}, drop=("email", "notes"))
    assert out.schema.names == ["email", "customer_ref", "amount"]


def test_default_drop_drops_name_hints_and_blocks_what_was_not_known() -> None:
    columns = {
        "full_name": ["Ann Lee", "Bo Chen"],
        "notes": ["a@x.io", "ok"],
        "city": ["Lyon", "Nice"],
    }
    out, report, _ = _scan(columns, "drop")
    assert out.schema.names == ["notes", "city"]
    assert report.blocked == ["notes"]
    assert detect_columns(
        pa.record_batch({k: pa.array(v) for k, v in columns.items()}).schema,
        [pa.record_batch({k: pa.array(v) for k, v in columns.items()})],
    ) == {"full_name", "notes"}
    out, report, _ = _scan(columns, "drop", drop=("notes",))
    assert out.schema.names == ["city"] and report.blocked == []


def test_block_and_allow() -> None:
    out, report, scanner = _scan(ROWS, {"notes": "allow", "*": "block"})
    assert not scanner.changed
    assert out.column(0).to_pylist() == ROWS["email"]
    assert report.blocked == ["email"] and not report.unhandled
    assert {c.column: c.action for c in report.columns} == {"email": "block", "notes": "allow"}
    _, report, _ = _scan(ROWS, "allow")
    assert not report.unhandled and report.blocked == []
    _, report, _ = _scan({"notes": ["nothing"]}, "block")
    assert report.blocked == [] and report.columns == []


def test_name_hint_columns_of_any_type() -> None:
    columns = {
        "firstName": ["Ann", None, "Bo"],
        "date_of_birth": pa.array([1, None, 3], pa.date32()),
        "street_address": ["1 Main St", "2 High St", None],
        "product_name": ["Widget", "Gadget", "Gizmo"],
    }
    out, report, scanner = _scan(columns, "mask")
    assert out.column(0).to_pylist() == ["[PERSON_NAME]", None, "[PERSON_NAME]"]
    assert out.column(1).to_pylist() == ["[BIRTH_DATE]", None, "[BIRTH_DATE]"]
    assert out.column(2).to_pylist() == ["[ADDRESS]", "[ADDRESS]", None]
    assert out.column(3).to_pylist() == ["Widget", "Gadget", "Gizmo"]
    assert scanner.output_schema.field("date_of_birth").type == pa.string()
    hints = {c.column: (c.name_hint, c.kinds) for c in report.columns}
    assert hints == {
        "firstName": ("person_name", {"person_name": 2}),
        "date_of_birth": ("birth_date", {"birth_date": 2}),
        "street_address": ("address", {"address": 2}),
    }
    hashed, _, _ = _scan(columns, "hash")
    dob = hashed.column(1).to_pylist()
    assert dob[0] == "pii_" + hmac.new(KEY, b"1970-01-02", hashlib.sha256).hexdigest()[:20]


@pytest.mark.parametrize(
    ("column", "hint"),
    [
        ("name", "person_name"),
        ("Name", "person_name"),
        ("first_name", "person_name"),
        ("LastName", "person_name"),
        ("surname", "person_name"),
        ("full-name", "person_name"),
        ("given name", "person_name"),
        ("customer_name", "person_name"),
        ("address", "address"),
        ("home_addr", "address"),
        ("street", "address"),
        ("postcode", "address"),
        ("zip", "address"),
        ("postal_code", "address"),
        ("dob", "birth_date"),
        ("DOB", "birth_date"),
        ("birth_date", "birth_date"),
        ("birthdate", "birth_date"),
        ("birthday", "birth_date"),
        ("dateOfBirth", "birth_date"),
        ("product_name", None),
        ("file_name", None),
        ("username", None),
        ("email_address", None),
        ("ip_address", None),
        ("city", None),
        ("amount", None),
        ("zipper_color", None),
    ],
)
def test_name_hints(column: str, hint: str | None) -> None:
    assert pii._name_hint(column) == hint


def test_dictionary_and_large_string_columns() -> None:
    cat = pa.array(["a@x.io", "ok", "a@x.io", None, "ok"]).dictionary_encode()
    big = pa.array(["ok", "ip 10.0.0.1", None, "ok", "x"], pa.large_string())
    out, report, scanner = _scan({"cat": cat, "big": big}, "mask")
    assert out.column(0).to_pylist() == ["[EMAIL]", "ok", "[EMAIL]", None, "ok"]
    assert out.column(1).to_pylist() == ["ok", "ip [IP_ADDRESS]", None, "ok", "x"]
    assert scanner.output_schema.types == [pa.string(), pa.large_string()]
    assert {c.column: (c.rows, c.kinds) for c in report.columns} == {
        "cat": (2, {"email": 2}),
        "big": (1, {"ip_address": 1}),
    }
    assert report.columns[0].examples == [("t.csv", 0), ("t.csv", 2)]
    _, detected, _ = _scan({"cat": cat})
    assert detected.columns[0].rows == 2
    view = pa.array(["a@x.io", None, "ok"], pa.string_view())
    out, report, scanner = _scan({"view": view}, "mask")
    assert out.column(0).to_pylist() == ["[EMAIL]", None, "ok"]
    assert scanner.output_schema.types == [pa.string()]


def test_null_slots_are_not_read_as_values() -> None:
    base = pa.array(["ok", "a@x.io", "fine"])
    validity = pa.array([True, False, True]).buffers()[1]
    masked = pa.Array.from_buffers(pa.string(), 3, [validity, *base.buffers()[1:]])
    out, report, _ = _scan({"notes": masked}, "mask")
    assert report.columns == []
    assert out.column(0).to_pylist() == ["ok", None, "fine"]


def test_rows_positions_across_batches_and_files() -> None:
    schema = pa.schema([("notes", pa.string()), ("n", pa.int64())])
    scanner = PiiScanner(schema, parse_policy("mask"), hmac_key=KEY)

    def batch(values: list[str]) -> pa.RecordBatch:
        return pa.record_batch([pa.array(values), pa.array(range(len(values)))], schema=schema)

    scanner.process(batch(["x", "a@x.io", "y"]), file="a.csv")
    scanner.process(batch(["y", "b@x.io"]), file="a.csv")
    scanner.process(batch(["c@x.io", "z"]), file="b.csv")
    scanner.process(batch(["d@x.io", "e@x.io", "f@x.io"]), file="a.csv")
    found = scanner.report().columns[0]
    assert found.rows == 6 and found.kinds == {"email": 6}
    assert found.examples == [("a.csv", 1), ("a.csv", 4), ("b.csv", 0), ("a.csv", 5), ("a.csv", 6)]


def test_several_text_columns_scanned_together() -> None:
    rng = np.random.default_rng(0)
    clean = [f"item {i} {rng.integers(1000)}" for i in range(3000)]
    second = list(clean)
    second[2999] = "ssn 123-45-6789"
    out, report, _ = _scan({"a": clean, "b": second, "c": clean[:3000]}, "mask")
    assert [(c.column, c.examples) for c in report.columns] == [("b", [("t.csv", 2999)])]
    assert out.column(1)[2999].as_py() == "ssn [US_SSN]"


def test_python_validation_runs_on_candidates_only(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = pii._luhn

    def counting(digits: str) -> bool:
        calls.append(digits)
        return real(digits)

    monkeypatch.setattr(pii._detectors, "_luhn", counting)
    values = [f"order {i} paid 2024-01-{i % 28 + 1:02d} total {i * 1.5:.2f}" for i in range(20_000)]
    values[7] = "card 4111 1111 1111 1111"
    values[19_000] = "card 4111 1111 1111 1112"
    _, report, _ = _scan({"notes": values})
    assert report.columns[0].kinds == {"credit_card": 1}
    assert len(calls) <= 4


def test_schema_mismatch_is_refused() -> None:
    scanner = PiiScanner(pa.schema([("a", pa.string())]), parse_policy(None), hmac_key=KEY)
    with pytest.raises(InvalidInput, match="schema"):
        scanner.process(pa.record_batch({"a": pa.array([1])}), file="x.csv")


# --- policy parsing and errors --------------------------------------------------------------


def test_parse_policy_forms_and_round_trip() -> None:
    assert parse_policy(None) == PiiPolicy()
    assert parse_policy(" MASK ") == PiiPolicy(default="mask") == PiiPolicy(default="Mask")
    spec = {"email": "hash", "notes": "mask", "*": "block"}
    policy = parse_policy(spec)
    assert policy == PiiPolicy(default="block", columns={"email": "hash", "notes": "mask"})
    assert parse_policy(policy) is policy
    assert PiiPolicy.from_json(policy.to_json()) == policy
    assert parse_policy(policy.to_json()) == policy
    assert json.loads(policy.to_json()) == spec
    assert set(POLICIES) == {"block", "mask", "hash", "drop", "allow"}
    assert set(KINDS) >= {
        "email",
        "phone",
        "credit_card",
        "iban",
        "us_ssn",
        "ip_address",
        "person_name",
    }


@pytest.mark.parametrize(
    "spec", ["redact", {"email": "encrypt"}, {"*": "none"}, {"email": 3}, 7, "{not json"]
)
def test_bad_policies_are_invalid_input(spec: object) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_policy(spec)  # type: ignore[arg-type]
    if "not json" not in str(spec) and spec != 7:
        assert all(word in str(raised.value) for word in POLICIES)


def test_unknown_columns_and_short_keys_are_invalid_input() -> None:
    schema = pa.schema([("email", pa.string()), ("notes", pa.string())])
    with pytest.raises(InvalidInput, match=r"emial.*email, notes"):
        PiiScanner(schema, parse_policy({"emial": "hash"}), hmac_key=KEY)
    with pytest.raises(InvalidInput, match="nope"):
        PiiScanner(schema, parse_policy(None), hmac_key=KEY, drop_columns=["nope"])
    with pytest.raises(InvalidInput, match="16 bytes"):
        PiiScanner(schema, parse_policy("hash"), hmac_key=b"short")
    PiiScanner(schema, parse_policy("mask"), hmac_key=b"")  # nothing to hash: no key needed


# --- the report -----------------------------------------------------------------------------


def test_report_never_contains_values() -> None:
    secrets = {
        "email": ["Ann.Secret@Example.com", "x"],
        "notes": ["ssn 219-09-9999 card 4111 1111 1111 1111", "iban DE89 3704 0044 0532 0130 00"],
        "full_name": ["Zebulon Quartermaine", "Ottoline Vexworth"],
        "ip": ["198.51.100.77", "+44 20 7946 0958"],
    }
    for policy in (None, "mask", "hash", "block", "allow", {"*": "drop"}):
        _, report, _ = _scan(secrets, policy)
        assert report.columns
        text = report.to_json() + report.summary() + repr(report)
        for needle in (
            "Secret",
            "219-09",
            "4111",
            "DE89",
            "3704",
            "Zebulon",
            "Vexworth",
            "198.51",
            "7946",
        ):
            assert needle not in text, (policy, needle)


def test_report_json_round_trip_summary_and_merge() -> None:
    _, report, _ = _scan(ROWS, {"notes": "mask", "*": "block"})
    again = PiiReport.from_json(report.to_json())
    assert again == report
    assert isinstance(again.columns[0].examples[0], tuple)
    summary = report.summary()
    assert "email" in summary and "Blocked: email" in summary
    assert PiiReport([]).summary() == "No PII found."
    with pytest.raises(InvalidInput):
        PiiReport.from_json('{"columns": [{"column": "a"}]}')
    other = PiiReport(
        [
            ColumnFinding("email", {"email": 2}, 2, [("u.csv", 9)], None, "none"),
            ColumnFinding("x", {}, 0, [], None, "drop"),
        ]
    )
    merged = PiiReport.merge([report, other])
    email = next(c for c in merged.columns if c.column == "email")
    assert email.kinds == {"email": 5} and email.rows == 5 and email.action == "block"
    assert email.examples[-1] == ("u.csv", 9) and len(email.examples) == 4
    assert [c.column for c in merged.columns] == ["email", "notes", "x"]


_CELLS = [
    "ok",
    "",
    "mail a@x.io",
    "call +44 20 7946 0958",
    "card 4111 1111 1111 1111",
    "ssn 123-45-6789 and b@y.org",
    "ip 10.0.0.1",
    "order 42 shipped",
    "DE89 3704 0044 0532 0130 00",
]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(_CELLS) | st.none(), max_size=200),
    st.sampled_from([None, "mask", "hash"]),
)
def test_dictionary_columns_scan_as_their_values(
    cells: list[str | None], policy: str | None
) -> None:
    # The table pass reads text dictionary-encoded and scans each distinct value once; the
    # findings, their rows and the stored cells must be those of a cell-by-cell scan.
    plain = pa.array(cells, pa.string())
    values = pa.array(["unused 9.9.9.9", *_CELLS], pa.string())  # a dictionary as Parquet's
    encoded = pa.DictionaryArray.from_arrays(pc.index_in(plain, value_set=values), values)
    out_a, report_a, _ = _scan({"notes": plain}, policy)
    out_b, report_b, _ = _scan({"notes": encoded}, policy)
    assert report_a == report_b
    assert out_a.column(0).cast(pa.string()).to_pylist() == (
        out_b.column(0).cast(pa.string()).to_pylist()
    )
