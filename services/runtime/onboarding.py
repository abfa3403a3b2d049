"""A tenant's Kafka side, provisioned when a service's CLI registers it.

``<cli> lab register acme`` (and ``evaluator register``, ``reviewer register``)
first gives the tenant what it needs on the broker — its feed topics, its ACLs and
its SCRAM credential, in that order (``principals.provision_tenant``) — and only
then writes its registry row, so that every principal whose input is accepted
has the feeds its answers go to. ``remove`` revokes its keys first, then its
credential and ACLs (its feeds keep their records for the audit).

It runs as the operator (``FR_KAFKA_OPERATOR_CREDENTIALS_FILE``). On a broker
without security (``FR_KAFKA_SECURITY_PROTOCOL=PLAINTEXT``: a benchmark) there is
no principal to provision: only the feeds are created.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from contracts.acl import AclScope
from contracts.principals import InvalidTenantId, Principal, Role
from services.runtime.database import database_name
from services.runtime.kafka import KafkaSettings
from services.runtime.principals import deprovision_tenant, feed_plans, provision_tenant
from services.runtime.settings import RuntimeSettings
from services.runtime.topics import ensure_topics


class OnboardingError(Exception):
    """The tenant's Kafka side cannot be provisioned (the message says why)."""


@dataclass(frozen=True)
class KafkaOnboarding:
    role: Role
    operator: KafkaSettings
    credentials_dir: Path
    scope: AclScope

    @classmethod
    def from_settings(cls, role: Role, settings: RuntimeSettings) -> KafkaOnboarding:
        scope = AclScope(
            prefix=settings.topic_prefix,
            principal_prefix=settings.principal_prefix,
            database=database_name(settings.database_url),
        )
        if settings.kafka_security_protocol == "PLAINTEXT":
            return cls(role, settings, settings.tenant_credentials_dir, scope)
        file = settings.kafka_operator_credentials_file
        if file is None:
            raise OnboardingError(
                f"registering a {role} also provisions its Kafka principal, as the operator: "
                "set FR_KAFKA_OPERATOR_CREDENTIALS_FILE"
            )
        operator = settings.model_copy(
            update={"kafka_credentials_file": file, "kafka_username": None, "kafka_password": None}
        )
        return cls(role, operator, settings.tenant_credentials_dir, scope)

    def principal(self, tenant_id: str) -> Principal:
        try:
            return Principal(self.role, tenant_id)
        except InvalidTenantId as exc:
            raise OnboardingError(str(exc)) from None

    async def register(self, tenant_id: str) -> str:
        principal = self.principal(tenant_id)
        plans = feed_plans(principal, self.scope)
        feeds = ", ".join(plan.name for plan in plans) or "none"
        if self.operator.kafka_security_protocol == "PLAINTEXT":
            await ensure_topics(self.operator, plans)
            return f"Kafka without security: no principal; feeds: {feeds}"
        file = self.credentials_dir / f"{self.scope.principal_prefix}{principal.name}.json"
        await provision_tenant(self.operator, principal, file, self.scope)
        return (
            f"Kafka principal {self.scope.principal_prefix}{principal.name}: credentials in "
            f"{file} (mode 0600; hand it over on a secure channel); feeds: {feeds}"
        )

    async def remove(self, tenant_id: str) -> str:
        principal = self.principal(tenant_id)
        if self.operator.kafka_security_protocol == "PLAINTEXT":
            return "Kafka without security: no principal to revoke; feeds kept"
        await deprovision_tenant(self.operator, principal, self.scope)
        return (
            f"Kafka principal {self.scope.principal_prefix}{principal.name} revoked "
            "(no new connection, nothing more on an open one); its feeds are kept"
        )
