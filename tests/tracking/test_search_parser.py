"""The run-search filter parser: examples, error columns, and property tests."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlplane.errors import InvalidInput
from mlplane.tracking.search import (
    ATTRIBUTES,
    DATASET_FIELDS,
    ENTITY_ALIASES,
    NUMBER_OPS,
    And,
    Comparison,
    Expr,
    Not,
    Or,
    OrderKey,
    allowed_ops,
    parse_filter,
    parse_order_by,
    render,
    render_key,
)

C = Comparison
ACC = C("metrics", "acc", ">", 0.5)
MODEL = C("params", "model", "=", "rf")
TEAM = C("tags", "team", "=", "ml")

VALID: list[tuple[str, Expr]] = [
    ("metrics.acc > 0.5", ACC),
    ("metrics.acc>0.5", ACC),
    ("metric.acc > .5", ACC),
    ("metrics.acc >= 1", C("metrics", "acc", ">=", 1.0)),
    ("metrics.acc < -2", C("metrics", "acc", "<", -2.0)),
    ("metrics.acc <= 1.5e-3", C("metrics", "acc", "<=", 0.0015)),
    ("metrics.acc = 2E3", C("metrics", "acc", "=", 2000.0)),
    ("metrics.acc != +1", C("metrics", "acc", "!=", 1.0)),
    ("metrics.acc <> 1", C("metrics", "acc", "!=", 1.0)),
    ("metrics.acc < inf", C("metrics", "acc", "<", math.inf)),
    ("metrics.acc > -Infinity", C("metrics", "acc", ">", -math.inf)),
    ("metrics.val/loss < 1", C("metrics", "val/loss", "<", 1.0)),
    ("metrics.train-loss_v2.x<1", C("metrics", "train-loss_v2.x", "<", 1.0)),
    ("metrics.`my metric` < 1", C("metrics", "my metric", "<", 1.0)),
    ('metrics."my metric" < 1', C("metrics", "my metric", "<", 1.0)),
    ("metrics.'my metric' < 1", C("metrics", "my metric", "<", 1.0)),
    ('metrics."say \\"hi\\"" < 1', C("metrics", 'say "hi"', "<", 1.0)),
    ("params.model = 'rf'", MODEL),
    ('param.model = "rf"', MODEL),
    ("parameters.model='rf'", MODEL),
    ("params.model.depth = '3'", C("params", "model.depth", "=", "3")),
    ("params.`a b` != 'x'", C("params", "a b", "!=", "x")),
    ("params.p = 'it''s'", C("params", "p", "=", "it's")),
    ("params.p = 'it\\'s'", C("params", "p", "=", "it's")),
    ('params.p = "say ""hi"""', C("params", "p", "=", 'say "hi"')),
    ("params.p = 'back\\\\slash'", C("params", "p", "=", "back\\slash")),
    ("params.p = ''", C("params", "p", "=", "")),
    ("params.p LIKE 'r%'", C("params", "p", "LIKE", "r%")),
    ("params.p like 'r_'", C("params", "p", "LIKE", "r_")),
    ("params.p ILIKE '%F'", C("params", "p", "ILIKE", "%F")),
    ("params.p IS NULL", C("params", "p", "IS NULL")),
    ("params.p is not null", C("params", "p", "IS NOT NULL")),
    ("tags.team = 'ml'", TEAM),
    ("tag.team = 'ml'", TEAM),
    ("tags.mlflow.note = 'x'", C("tags", "mlflow.note", "=", "x")),
    ("tags.t IS NOT NULL", C("tags", "t", "IS NOT NULL")),
    ("attributes.status = 'FINISHED'", C("attributes", "status", "=", "FINISHED")),
    ("attribute.run_name LIKE 'a%'", C("attributes", "run_name", "LIKE", "a%")),
    ("attr.user_id != 'bob'", C("attributes", "user_id", "!=", "bob")),
    ("run.artifact_uri = 'x'", C("attributes", "artifact_uri", "=", "x")),
    ("attributes.created > 5", C("attributes", "start_time", ">", 5.0)),
    ("attributes.Created > 5", C("attributes", "start_time", ">", 5.0)),
    ("created > 5", C("attributes", "start_time", ">", 5.0)),
    ("end_time <= 5", C("attributes", "end_time", "<=", 5.0)),
    ("lifecycle_stage = 'active'", C("attributes", "lifecycle_stage", "=", "active")),
    ("run_id IN ('a', \"b\")", C("attributes", "run_id", "IN", ("a", "b"))),
    ("attributes.run_id not in ('a')", C("attributes", "run_id", "NOT IN", ("a",))),
    ("status IN ('FAILED','KILLED')", C("attributes", "status", "IN", ("FAILED", "KILLED"))),
    ("datasets.name = 'iris'", C("datasets", "name", "=", "iris")),
    ("dataset.digest IN ('d1', 'd2')", C("datasets", "digest", "IN", ("d1", "d2"))),
    ("datasets.context ILIKE 'TRAIN'", C("datasets", "context", "ILIKE", "TRAIN")),
    ("metrics.acc > 0.5 AND params.model = 'rf'", And((ACC, MODEL))),
    ("metrics.acc > 0.5 and params.model = 'rf' And tags.team = 'ml'", And((ACC, MODEL, TEAM))),
    ("metrics.acc > 0.5 OR params.model = 'rf'", Or((ACC, MODEL))),
    # AND binds tighter than OR, NOT tighter than AND.
    (
        "metrics.acc > 0.5 OR params.model = 'rf' AND tags.team = 'ml'",
        Or((ACC, And((MODEL, TEAM)))),
    ),
    (
        "metrics.acc > 0.5 AND params.model = 'rf' OR tags.team = 'ml'",
        Or((And((ACC, MODEL)), TEAM)),
    ),
    ("NOT metrics.acc > 0.5 AND params.model = 'rf'", And((Not(ACC), MODEL))),
    ("NOT NOT metrics.acc > 0.5", Not(Not(ACC))),
    ("NOT (metrics.acc > 0.5 OR params.model = 'rf')", Not(Or((ACC, MODEL)))),
    (
        "(metrics.acc > 0.5 OR params.model = 'rf') AND tags.team = 'ml'",
        And((Or((ACC, MODEL)), TEAM)),
    ),
    ("((metrics.acc > 0.5))", ACC),
    # Explicit grouping of the same operator is kept, so render() round-trips.
    (
        "(metrics.acc > 0.5 AND params.model = 'rf') AND tags.team = 'ml'",
        And((And((ACC, MODEL)), TEAM)),
    ),
    ("(metrics.acc>0.5)OR(params.model='rf')", Or((ACC, MODEL))),
    ("\n\tmetrics.acc  >  0.5\n", ACC),
]


@pytest.mark.parametrize(("text", "expected"), VALID)
def test_parse_valid(text: str, expected: Expr) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize("text", [None, "", "   ", "\n\t"])
def test_no_filter(text: str | None) -> None:
    assert parse_filter(text) is None


ERRORS: list[tuple[str, int, str]] = [
    (
        "metrics.acc foo 1",
        13,
        "expected a comparator (=, !=, <, <=, >, >=, LIKE, ILIKE) after 'metrics.acc', got 'foo'",
    ),
    ("metrics.acc", 12, "expected a comparator"),
    ("metrics.acc >", 14, "expected a number after 'metrics.acc >', got end of input"),
    ("metrics.acc > 'x'", 15, "'metrics.acc' is numeric"),
    ("metrics.acc LIKE '%'", 13, "LIKE cannot be used with 'metrics.acc'"),
    ("metrics.acc > nan", 15, "expected a number"),
    ("params.p > 'x'", 10, "> cannot be used with 'params.p'"),
    ("params.p = 1", 12, "expected a quoted string after 'params.p =', got '1'"),
    ("params.p IN ('a')", 10, "IN cannot be used"),
    ("params.p IS 'x'", 13, "expected NULL or NOT NULL after IS"),
    ("params.p = 'abc", 12, "unterminated string"),
    ('params.p = "abc\\"', 12, "unterminated string"),
    ("params.`a b = 'x'", 8, "unterminated backtick-quoted key"),
    ("params. = 'x'", 8, "expected a key after 'params.'"),
    ("params.'' = 'x'", 8, "expected a key after 'params.'"),
    ("foo.bar = 'x'", 1, "unknown entity type 'foo'"),
    ("attributes.colour = 'x'", 1, "unknown attribute 'colour'"),
    ("datasets.size = 'x'", 1, "unknown dataset field 'size'"),
    ("attributes.start_time = 'x'", 25, "'attributes.start_time' is numeric"),
    ("status > 'x'", 8, "> cannot be used"),
    ("colour = 'x'", 1, "expected an identifier"),
    ("()", 2, "expected an identifier"),
    ("(metrics.a > 1", 15, "to close the '(' at column 1"),
    ("metrics.a > 1)", 14, "expected AND, OR or end of filter, got ')'"),
    ("metrics.a > 1 metrics.b > 2", 15, "expected AND, OR or end of filter"),
    ("metrics.a > 1 AND", 18, "expected an identifier"),
    ("metrics.a > 1 OR OR metrics.b > 1", 18, "expected an identifier such as metrics.<key>"),
    ("metrics.a > 1 OR OR metrics.b > 1", 18, "got 'OR'"),
    ("NOT", 4, "expected an identifier"),
    ("run_id IN 'a'", 11, "expected '(' after 'run_id IN'"),
    ("run_id IN ()", 12, "expected a quoted string after '('"),
    ("run_id IN ('a',)", 16, "expected a quoted string after ','"),
    ("run_id IN ('a' 'b')", 16, "expected ',' or ')' in the IN list"),
    ("run_id NOT LIKE 'a'", 12, "expected IN after NOT"),
    ("metrics.a > 1; DROP TABLE runs", 14, "unexpected character ';'"),
    ("metrics.a > 1 && metrics.b > 1", 15, "unexpected character '&'"),
    ("metrics.a > 1 AND (metrics.b > 1 OR params.x = 'y'", 51, "to close the '(' at column 19"),
]


@pytest.mark.parametrize(("text", "column", "message"), ERRORS)
def test_parse_errors(text: str, column: int, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_filter(text)
    assert info.value.details == {"column": column}
    assert str(info.value).startswith(f"invalid filter at column {column}: ")
    assert message in str(info.value)


@pytest.mark.parametrize("text", ["(" * 500 + "metrics.a > 1" + ")" * 500, "NOT " * 2000 + "x"])
def test_deep_nesting_is_refused_cleanly(text: str) -> None:
    with pytest.raises(InvalidInput, match="nests deeper"):
        parse_filter(text)


def test_order_by() -> None:
    items = [
        "metrics.acc DESC",
        "params.model",
        "attributes.start_time ASC",
        "tags.`a b` desc",
        "start_time",
        "Created",
        'metric."val loss" asc',
        "run_name",
    ]
    assert parse_order_by(items) == [
        OrderKey("metrics", "acc", ascending=False),
        OrderKey("params", "model"),
        OrderKey("attributes", "start_time"),
        OrderKey("tags", "a b", ascending=False),
        OrderKey("attributes", "start_time"),
        OrderKey("attributes", "start_time"),
        OrderKey("metrics", "val loss"),
        OrderKey("attributes", "run_name"),
    ]
    assert parse_order_by(None) == []
    assert parse_order_by([]) == []


@pytest.mark.parametrize(
    ("item", "column", "message"),
    [
        ("metrics.acc foo", 13, "expected ASC, DESC or end of item, got 'foo'"),
        ("metrics.acc DESC ASC", 18, "expected ASC, DESC or end of item"),
        ("", 1, "expected an identifier"),
        ("datasets.name", 1, "'datasets.name' cannot be used here"),
        ("bogus", 1, "expected an identifier"),
        ("attributes.bogus", 1, "unknown attribute 'bogus'"),
        ("foo.bar", 1, "unknown entity type 'foo'"),
        ("metrics.`acc", 9, "unterminated"),
    ],
)
def test_order_by_errors(item: str, column: int, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_order_by([item])
    assert info.value.details == {"column": column}
    assert message in str(info.value)


def test_order_by_item_must_be_a_string() -> None:
    with pytest.raises(InvalidInput):
        parse_order_by([None])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("key", "spelling"),
    [
        ("acc", "acc"),
        ("val/loss", "val/loss"),
        ("a b", "`a b`"),
        ("x=y", "`x=y`"),
        ("a`b", '"a`b"'),
        ('a`"b\\', '"a`\\"b\\\\"'),
    ],
)
def test_render_key(key: str, spelling: str) -> None:
    assert render_key(key) == spelling


# --- property tests ---------------------------------------------------------------

KEYS = st.one_of(
    st.sampled_from(
        [
            "acc",
            "val/loss",
            "model.depth",
            "a b",
            "it's",
            'say "hi"',
            "x`y",
            "a\\b",
            "and",
            "NOT",
            "1.5",
            "-",
            "(x)",
            "k=v",
            "a,b",
            "é ü",
        ]
    ),
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=10),
)
STRINGS = st.text(st.characters(exclude_categories=("Cs",)), max_size=10)
NUMBERS = st.floats(allow_nan=False)


@st.composite
def comparisons(draw: st.DrawFn) -> Comparison:
    entity = draw(st.sampled_from(["metrics", "params", "tags", "attributes", "datasets"]))
    if entity == "attributes":
        key = draw(st.sampled_from(sorted(ATTRIBUTES)))
    elif entity == "datasets":
        key = draw(st.sampled_from(sorted(DATASET_FIELDS)))
    else:
        key = draw(KEYS)
    op = draw(st.sampled_from(allowed_ops(entity, key)))  # type: ignore[arg-type]
    if op in ("IS NULL", "IS NOT NULL"):
        return Comparison(entity, key, op)  # type: ignore[arg-type]
    if op in ("IN", "NOT IN"):
        value = tuple(draw(st.lists(STRINGS, min_size=1, max_size=3)))
        return Comparison(entity, key, op, value)  # type: ignore[arg-type]
    numeric = allowed_ops(entity, key) == NUMBER_OPS  # type: ignore[arg-type]
    return Comparison(entity, key, op, draw(NUMBERS if numeric else STRINGS))  # type: ignore[arg-type]


def expressions(leaves: st.SearchStrategy[Comparison] | None = None) -> st.SearchStrategy[Expr]:
    def extend(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
        many = st.lists(children, min_size=2, max_size=3).map(tuple)
        return st.one_of(many.map(And), many.map(Or), children.map(Not))

    return st.recursive(leaves or comparisons(), extend, max_leaves=8)


@settings(max_examples=300)
@given(expressions())
def test_render_round_trips(expr: Expr) -> None:
    assert parse_filter(render(expr)) == expr


def _spell(expr: Expr, draw: st.DrawFn) -> str:
    """Another spelling of ``expr``: aliases, keyword case, quoting and spacing vary."""
    if isinstance(expr, Comparison):
        aliases = [a for a, e in ENTITY_ALIASES.items() if e == expr.entity]
        ident = f"{draw(st.sampled_from(aliases))}.{render_key(expr.key)}"
        if expr.entity == "attributes" and draw(st.booleans()):
            ident = "created" if expr.key == "start_time" else expr.key
        op = expr.op
        if op == "!=" and draw(st.booleans()):
            op = "<>"
        op = draw(st.sampled_from([op, op.lower(), op.title()]))
        if expr.value is None:
            return f"{ident} {op}"
        if isinstance(expr.value, float):
            value = repr(expr.value)
        else:
            quote = draw(st.sampled_from(["'", '"']))
            items = expr.value if isinstance(expr.value, tuple) else (expr.value,)
            spelled = [
                quote + v.replace("\\", "\\\\").replace(quote, quote * 2) + quote for v in items
            ]
            value = f"({','.join(spelled)})" if isinstance(expr.value, tuple) else spelled[0]
        space = draw(st.sampled_from([" ", "  ", "\t"]))
        return f"{ident}{space}{op}{space}{value}"
    if isinstance(expr, Not):
        return f"{draw(st.sampled_from(['NOT', 'not']))} ({_spell(expr.operand, draw)})"
    word = draw(st.sampled_from(["AND", "and"] if isinstance(expr, And) else ["OR", "Or"]))
    return f" {word} ".join(
        f"({_spell(o, draw)})" if isinstance(o, And | Or) else _spell(o, draw)
        for o in expr.operands
    )


@settings(max_examples=200)
@given(st.data())
def test_other_spellings_parse_the_same(data: st.DataObject) -> None:
    expr = data.draw(expressions())
    text = _spell(expr, data.draw)
    assert parse_filter(text) == expr, text


TOKENS = [
    "metrics.a",
    "params.`b c`",
    "tags.t",
    "status",
    "datasets.name",
    "AND",
    "OR",
    "NOT",
    "(",
    ")",
    ",",
    "=",
    "!=",
    "<",
    ">=",
    "LIKE",
    "IN",
    "IS",
    "NULL",
    "'x'",
    '"y',
    "1.5",
    "-inf",
    "`",
    ".",
    "'",
    "-",
    "created",
    "DESC",
]


@settings(max_examples=500)
@given(
    st.one_of(
        st.text(max_size=40),
        st.lists(st.sampled_from(TOKENS), max_size=12).map(" ".join),
        st.lists(st.sampled_from(TOKENS), max_size=12).map("".join),
    )
)
def test_arbitrary_text_only_raises_invalid_input(text: str) -> None:
    for parse in (parse_filter, lambda t: parse_order_by([t])):
        try:
            parse(text)
        except InvalidInput as exc:
            assert exc.details["column"] in range(1, len(text) + 2)
