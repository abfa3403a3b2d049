"""The demo's customers are input the access service and the enforcer accept as they are:
a sample no row of which is malformed, and principals the decision contract reads."""

from __future__ import annotations

import csv
import io
from collections import Counter

from contracts.policy.principal import Principal
from deploy.demo import customers
from services.access.sample import MalformedRow, read_csv


def test_every_row_of_the_sample_is_a_principal_access_reads() -> None:
    rows = list(read_csv(customers.sample_csv(500).encode().splitlines(keepends=True)))
    malformed = [row for row in rows if isinstance(row, MalformedRow)]
    assert malformed == [] and len(rows) == 500


def test_the_sample_mixes_every_kind_of_customer() -> None:
    rows = list(csv.DictReader(io.StringIO(customers.sample_csv())))
    us_persons = Counter(row["us_person"] for row in rows)
    assert {"citizen", "lawful_permanent_resident", "none"} <= set(us_persons)
    assert any(";" in row["citizenships"] for row in rows)  # dual nationals
    assert any(row["verification_status"] != "verified" for row in rows)
    assert any(row["organisation_id"] == customers.PARTNER for row in rows)


def test_the_sample_is_the_same_every_run() -> None:
    assert customers.sample_csv(50) == customers.sample_csv(50)


def test_the_customers_asked_about_are_principals_of_the_decision_contract() -> None:
    for who, principal in customers.ASKED.items():
        assert Principal.model_validate(principal).id, who
    assert set(customers.ASKED) == set(customers.EXPECTED)
