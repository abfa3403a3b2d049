"""The enforcement contract shared by the agency (services/access) and the labs'
enforcement points (services/labclient): the principal attribute model, the Cedar
schema and vocabulary, the derivation of Cedar entities from a principal at a time
t (the deemed-export rules), and the decision result.

It imports nothing of services/, so both sides decide with the same code.
"""

from contracts.policy.cedar import SCHEMA, SCHEMA_VERSION, Action
from contracts.policy.decision import Decision, DecisionBasis, DecisionReason
from contracts.policy.entities import DerivedAttributes, derive
from contracts.policy.evaluate import LoadedPolicy, UnusablePolicy
from contracts.policy.principal import (
    Attribute,
    CountryTie,
    IdentityVerification,
    Organisation,
    Principal,
    RequestContext,
    UsPersonStatus,
)

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "Action",
    "Attribute",
    "CountryTie",
    "Decision",
    "DecisionBasis",
    "DecisionReason",
    "DerivedAttributes",
    "IdentityVerification",
    "LoadedPolicy",
    "Organisation",
    "Principal",
    "RequestContext",
    "UnusablePolicy",
    "UsPersonStatus",
    "derive",
]
