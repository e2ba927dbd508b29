"""MLflow's experiment-search filter and order_by, and the service methods that use them."""

from __future__ import annotations

import pytest

from mlplane import errors
from mlplane.security import Principal
from mlplane.services import Services
from mlplane.tracking import experiment_search as es
from mlplane.tracking.entities import Experiment, ViewType

ADMIN = Principal(name="tester", is_platform_admin=True)


def _exp(eid: str, name: str, created: int, **tags: str) -> Experiment:
    return Experiment(eid, name, "default", "", "active", created, created + 1, tags=tags)


EXPS = [
    _exp("1", "fraud-a", 100, team="risk"),
    _exp("2", "fraud-b", 200, team="growth"),
    _exp("3", "Churn", 300),
]


def _names(text: str) -> list[str]:
    clauses = es.parse_filter(text)
    return [e.name for e in EXPS if es.matches(e, clauses)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ["fraud-a", "fraud-b", "Churn"]),
        ("name = 'Churn'", ["Churn"]),
        ("attribute.name LIKE 'fraud-%'", ["fraud-a", "fraud-b"]),
        ("name ILIKE 'churn'", ["Churn"]),
        ("name LIKE 'churn'", []),
        ("name != 'Churn'", ["fraud-a", "fraud-b"]),
        ("tags.team = 'risk'", ["fraud-a"]),
        ("tags.`team` != 'risk'", ["fraud-b"]),  # a missing tag matches no comparison
        ("tags.team IS NULL", ["Churn"]),
        ("tags.team IS NOT NULL AND name LIKE '%b'", ["fraud-b"]),
        ("creation_time >= 200 and creation_time < 300", ["fraud-b"]),
        ("experiment_id IN ('1', '3')", ["fraud-a", "Churn"]),
        ('name = "fraud-a"', ["fraud-a"]),
    ],
)
def test_filter_matches_like_mlflow(text: str, expected: list[str]) -> None:
    assert _names(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name > 'a'", "invalid comparator"),
        ("creation_time = 'x'", "numeric"),
        ("metrics.x = 1", "entity type"),
        ("owner = 'me'", "invalid experiment attribute"),
        ("name = 'a' OR name = 'b'", "expected AND"),
        ("name =", "ends too early"),
        ("name IS NULL", "only applies to tags"),
        ("name = 'a", "unexpected"),
    ],
)
def test_filter_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(errors.InvalidInput, match=message):
        es.parse_filter(text)


def test_sort_orders_by_keys_then_id() -> None:
    assert [e.experiment_id for e in es.sort(EXPS, None)] == ["3", "2", "1"]
    assert [e.name for e in es.sort(EXPS, ["name"])] == ["Churn", "fraud-a", "fraud-b"]
    assert [e.experiment_id for e in es.sort(EXPS, ["experiment_id DESC"])] == ["3", "2", "1"]
    same = [_exp("5", "x", 1), _exp("4", "y", 1)]
    assert [e.experiment_id for e in es.sort(same, ["creation_time DESC"])] == ["4", "5"]
    with pytest.raises(errors.InvalidInput, match="cannot order"):
        es.sort(EXPS, ["tags.team"])


def test_service_search_filters_and_orders_across_pages(svc: Services) -> None:
    t = svc.tracking
    for name, team in (("fraud-a", "risk"), ("fraud-b", "growth"), ("churn", "risk")):
        t.create_experiment(ADMIN, name, tags={"team": team})
    page = t.search_experiments(
        ADMIN, filter_string="tags.team = 'risk'", order_by=["name ASC"], max_results=1
    )
    assert [e.name for e in page.experiments] == ["churn"]
    assert page.next_page_token is not None
    rest = t.search_experiments(
        ADMIN,
        filter_string="tags.team = 'risk'",
        order_by=["name"],
        page_token=page.next_page_token,
    )
    assert [e.name for e in rest.experiments] == ["fraud-a"]
    assert rest.next_page_token is None
    eid = t.get_experiment_by_name(ADMIN, "fraud-b").experiment_id
    t.delete_experiment(ADMIN, eid)
    deleted = t.search_experiments(
        ADMIN, view_type=ViewType.DELETED_ONLY, filter_string="name LIKE 'fraud%'"
    )
    assert [e.name for e in deleted.experiments] == ["fraud-b"]


def test_service_deletes_an_experiment_tag(svc: Services) -> None:
    t = svc.tracking
    eid = t.create_experiment(ADMIN, "tagged", tags={"a": "1", "b": "2"})
    t.delete_experiment_tag(ADMIN, eid, "a")
    assert t.get_experiment(ADMIN, eid).tags == {"b": "2"}
    with pytest.raises(errors.NotFound, match="no tag 'a'"):
        t.delete_experiment_tag(ADMIN, eid, "a")
    with pytest.raises(errors.NotFound):
        t.delete_experiment_tag(ADMIN, "999999", "b")
