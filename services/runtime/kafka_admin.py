"""Kafka admin requests that aiokafka 0.14's admin client lacks, on its protocol framework.

- ACLs: Create/Describe/DeleteAcls v1 with many bindings per request (aiokafka
  has the structs but builds one binding per request, and its DescribeAcls v2
  is not encoded as the flexible version it claims to be);
- SCRAM users: Describe/AlterUserScramCredentials v0 (KIP-554), which aiokafka
  does not have; the salted password is computed here (RFC 5802 ``Hi``), so the
  password itself never travels;
- authorized operations: Metadata v8 with ``include_topic_authorized_operations``
  and DescribeGroups v3 (KIP-430), and a side-effect-free probe of WRITE on a
  transactional id (AddOffsetsToTxn with no producer id: the broker checks the
  ACLs first and answers INVALID_PRODUCER_ID_MAPPING once they pass).

Every request goes through ``AIOKafkaAdminClient`` (its connection, SASL and
TLS); ``KafkaAdmin`` is the only user of its one private ``_send_request``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeAlias, TypeVar

from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import (
    CreateAclsRequest_v1,
    DeleteAclsRequest_v1,
    DescribeAclsRequest_v1,
    DescribeGroupsResponse_v3,
)
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.transaction import AddOffsetsToTxnRequest
from aiokafka.protocol.types import (
    Array,
    Boolean,
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    String,
    TaggedFields,
)

from contracts.acl import Grant, Operation, PatternType, ResourceType
from services.runtime.kafka import KafkaSettings, aiokafka_options

# Wire codes (org.apache.kafka.common.{resource,acl}).
RESOURCE_CODES = {ResourceType.TOPIC: 2, ResourceType.GROUP: 3, ResourceType.TRANSACTIONAL_ID: 5}
RESOURCE_BY_CODE = {code: kind for kind, code in RESOURCE_CODES.items()}
ANY_RESOURCE = 1
PATTERN_CODES = {PatternType.LITERAL: 3, PatternType.PREFIXED: 4}
PATTERN_BY_CODE = {code: kind for kind, code in PATTERN_CODES.items()}
ANY_PATTERN = 1
OPERATION_CODES = {
    Operation.ALL: 2,
    Operation.READ: 3,
    Operation.WRITE: 4,
    Operation.CREATE: 5,
    Operation.DELETE: 6,
    Operation.ALTER: 7,
    Operation.DESCRIBE: 8,
    Operation.CLUSTER_ACTION: 9,
    Operation.DESCRIBE_CONFIGS: 10,
    Operation.ALTER_CONFIGS: 11,
    Operation.IDEMPOTENT_WRITE: 12,
}
OPERATION_BY_CODE = {code: op for op, code in OPERATION_CODES.items()}
ANY_OPERATION = 1
PERMISSION_CODES = {"ANY": 1, "DENY": 2, "ALLOW": 3}
PERMISSION_BY_CODE = {code: name for name, code in PERMISSION_CODES.items()}

RESOURCE_NOT_FOUND = 91  # aiokafka 0.14 has no class for it
SCRAM_SHA_512 = 2  # org.apache.kafka.clients.admin.ScramMechanism
SCRAM_ITERATIONS = 8192  # Kafka accepts 4096..16384 for SCRAM-SHA-512


class KafkaAdminError(RuntimeError):
    """The broker refused an admin request (the message names what and why)."""


def _raise_for(code: int, what: str, message: str | None = None) -> None:
    if code:
        error = kafka_errors.for_code(code)
        raise KafkaAdminError(f"{what}: {error.__name__}{f' ({message})' if message else ''}")


# --- ACL requests (aiokafka's v1 structs, many bindings per request) ---------------


class _CreateAcls(Request[CreateAclsRequest_v1]):
    API_KEY = 30

    def __init__(self, creations: list[tuple[Any, ...]]) -> None:
        self._creations = creations

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(self._creations)


class _DeleteAcls(Request[DeleteAclsRequest_v1]):
    API_KEY = 31

    def __init__(self, filters: list[tuple[Any, ...]]) -> None:
        self._filters = filters

    def build(self, request_struct_class: type[DeleteAclsRequest_v1]) -> DeleteAclsRequest_v1:
        return request_struct_class(self._filters)


class _DescribeAcls(Request[DescribeAclsRequest_v1]):
    API_KEY = 29

    def __init__(self, principal: str | None) -> None:
        self._principal = principal

    def build(self, request_struct_class: type[DescribeAclsRequest_v1]) -> DescribeAclsRequest_v1:
        return request_struct_class(
            ANY_RESOURCE, None, ANY_PATTERN, self._principal, None, ANY_OPERATION, 1
        )


# --- SCRAM credentials (KIP-554), flexible versions ---------------------------------


class _AlterUserScramCredentialsResponse_v0(Response):
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _AlterUserScramCredentialsRequest_v0(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = _AlterUserScramCredentialsResponse_v0
    SCHEMA = Schema(
        (
            "deletions",
            CompactArray(
                ("name", CompactString("utf-8")), ("mechanism", Int8), ("tags", TaggedFields)
            ),
        ),
        (
            "upsertions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )

    def __repr__(self) -> str:  # never print salted passwords (they are password-equivalent)
        return f"AlterUserScramCredentialsRequest_v0(users={[u[0] for u in self.upsertions]})"


class _AlterUserScramCredentials(Request[_AlterUserScramCredentialsRequest_v0]):
    API_KEY = 51

    def __init__(self, deletions: list[tuple[Any, ...]], upsertions: list[tuple[Any, ...]]):
        self._deletions = deletions
        self._upsertions = upsertions

    def build(
        self, request_struct_class: type[_AlterUserScramCredentialsRequest_v0]
    ) -> _AlterUserScramCredentialsRequest_v0:
        return request_struct_class(self._deletions, self._upsertions, {})

    def __repr__(self) -> str:
        return "AlterUserScramCredentials(...)"


class _DescribeUserScramCredentialsResponse_v0(Response):
    API_KEY = 50
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        ("error_message", CompactString("utf-8")),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                (
                    "credential_infos",
                    CompactArray(
                        ("mechanism", Int8), ("iterations", Int32), ("tags", TaggedFields)
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _DescribeUserScramCredentialsRequest_v0(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 50
    API_VERSION = 0
    RESPONSE_TYPE = _DescribeUserScramCredentialsResponse_v0
    SCHEMA = Schema(
        ("users", CompactArray(("name", CompactString("utf-8")), ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class _DescribeUserScramCredentials(Request[_DescribeUserScramCredentialsRequest_v0]):
    API_KEY = 50

    def __init__(self, users: list[str] | None) -> None:
        self._users = users

    def build(
        self, request_struct_class: type[_DescribeUserScramCredentialsRequest_v0]
    ) -> _DescribeUserScramCredentialsRequest_v0:
        users: list[tuple[str, dict[int, bytes]]] | None = (
            None if self._users is None else [(name, {}) for name in self._users]
        )
        return request_struct_class(users, {})


# --- authorized operations (KIP-430) ------------------------------------------------


class _MetadataResponse_v8(Response):
    API_KEY = 3
    API_VERSION = 8
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "brokers",
            Array(
                ("node_id", Int32),
                ("host", String("utf-8")),
                ("port", Int32),
                ("rack", String("utf-8")),
            ),
        ),
        ("cluster_id", String("utf-8")),
        ("controller_id", Int32),
        (
            "topics",
            Array(
                ("error_code", Int16),
                ("name", String("utf-8")),
                ("is_internal", Boolean),
                (
                    "partitions",
                    Array(
                        ("error_code", Int16),
                        ("partition_index", Int32),
                        ("leader_id", Int32),
                        ("leader_epoch", Int32),
                        ("replica_nodes", Array(Int32)),
                        ("isr_nodes", Array(Int32)),
                        ("offline_replicas", Array(Int32)),
                    ),
                ),
                ("topic_authorized_operations", Int32),
            ),
        ),
        ("cluster_authorized_operations", Int32),
    )


class _MetadataRequest_v8(RequestStruct):
    API_KEY = 3
    API_VERSION = 8
    RESPONSE_TYPE = _MetadataResponse_v8
    SCHEMA = Schema(
        ("topics", Array(String("utf-8"))),  # v8: a struct of one name = a string
        ("allow_auto_topic_creation", Boolean),
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
    )


class _TopicAuthorizedOperations(Request[_MetadataRequest_v8]):
    API_KEY = 3

    def __init__(self, topics: list[str]) -> None:
        self._topics = topics

    def build(self, request_struct_class: type[_MetadataRequest_v8]) -> _MetadataRequest_v8:
        return request_struct_class(self._topics, False, False, True)


class _DescribeGroupsRequest_v3(RequestStruct):
    # aiokafka's own v3 struct decodes the answer as v2, which drops
    # authorized_operations (and leaves its bytes unread).
    API_KEY = 15
    API_VERSION = 3
    RESPONSE_TYPE = DescribeGroupsResponse_v3
    SCHEMA = Schema(("groups", Array(String("utf-8"))), ("include_authorized_operations", Boolean))


class _DescribeGroupWithOperations(Request[_DescribeGroupsRequest_v3]):
    API_KEY = 15

    def __init__(self, group: str) -> None:
        self._group = group

    def build(
        self, request_struct_class: type[_DescribeGroupsRequest_v3]
    ) -> _DescribeGroupsRequest_v3:
        return request_struct_class([self._group], True)


def _operations(bits: int) -> frozenset[Operation]:
    if bits == -(2**31):  # "not requested / not known"
        return frozenset()
    return frozenset(op for op, code in OPERATION_CODES.items() if bits & (1 << code))


@dataclass(frozen=True)
class ResourceAccess:
    """What the caller may do on one resource, or the error that answered instead."""

    operations: frozenset[Operation]
    error: str | None = None  # e.g. TopicAuthorizationFailedError, UnknownTopicOrPartitionError


_T = TypeVar("_T")
AclTuple: TypeAlias = tuple[int, str, int, str, str, int, int]


def _acl_tuple(grant: Grant) -> AclTuple:
    return (
        RESOURCE_CODES[grant.resource_type],
        grant.name,
        PATTERN_CODES[grant.pattern],
        grant.principal,
        grant.host,
        OPERATION_CODES[grant.operation],
        PERMISSION_CODES[grant.permission],
    )


def salted_password(password: str, salt: bytes, iterations: int = SCRAM_ITERATIONS) -> bytes:
    """RFC 5802 ``Hi(password, salt, i)`` for SCRAM-SHA-512 = PBKDF2-HMAC-SHA-512."""
    return hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)


class KafkaAdmin:
    """``async with KafkaAdmin(settings) as admin:`` — an admin connection as
    ``settings``' principal (ACL and SCRAM changes need the operator's)."""

    def __init__(self, settings: KafkaSettings, *, request_timeout_ms: int = 15000) -> None:
        self.client = AIOKafkaAdminClient(
            **aiokafka_options(settings),
            client_id="frontier-review-admin",
            request_timeout_ms=request_timeout_ms,
        )

    async def __aenter__(self) -> Self:
        await self.client.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.client.close()

    async def _send(self, request: Request[Any], node_id: int | None = None) -> Any:
        return await self.client._send_request(request, node_id)

    # ACLs --------------------------------------------------------------------------

    async def create_acls(self, grants: Iterable[Grant]) -> None:
        batch = sorted(set(grants))
        if not batch:
            return
        response = await self._send(_CreateAcls([_acl_tuple(g) for g in batch]))
        for grant, (code, message) in zip(batch, response.creation_responses, strict=True):
            _raise_for(code, f"creating ACL {grant}", message)

    async def delete_acls(self, grants: Iterable[Grant]) -> int:
        """Delete exactly these bindings; returns how many the broker removed."""
        batch = sorted(set(grants))
        if not batch:
            return 0
        response = await self._send(_DeleteAcls([_acl_tuple(g) for g in batch]))
        removed = 0
        for grant, (code, message, matching) in zip(batch, response.filter_responses, strict=True):
            _raise_for(code, f"deleting ACL {grant}", message)
            removed += len(matching)
        return removed

    async def describe_acls(self, principal: str | None = None) -> frozenset[Grant]:
        """Every ACL binding (of ``principal``, e.g. ``User:intake``, if given)."""
        response = await self._send(_DescribeAcls(principal))
        _raise_for(response.error_code, "describing ACLs", response.error_message)
        grants: set[Grant] = set()
        for resource_code, name, pattern_code, acls in response.resources:
            for user, host, operation_code, permission_code in acls:
                grants.add(
                    Grant(
                        user,
                        _decode(RESOURCE_BY_CODE, resource_code, "resource type"),
                        name,
                        _decode(PATTERN_BY_CODE, pattern_code, "pattern type"),
                        _decode(OPERATION_BY_CODE, operation_code, "operation"),
                        _decode(PERMISSION_BY_CODE, permission_code, "permission"),
                        host,
                    )
                )
        return frozenset(grants)

    # SCRAM users -------------------------------------------------------------------

    async def upsert_scram_user(self, username: str, password: str) -> None:
        """Create or replace ``username``'s SCRAM-SHA-512 credential."""
        salt = os.urandom(32)
        upsertion: tuple[Any, ...] = (
            username,
            SCRAM_SHA_512,
            SCRAM_ITERATIONS,
            salt,
            salted_password(password, salt),
            {},
        )
        response = await self._send(_AlterUserScramCredentials([], [upsertion]))
        for user, code, message, _ in response.results:
            _raise_for(code, f"setting the SCRAM credential of {user!r}", message)

    async def delete_scram_user(self, username: str) -> bool:
        """Remove ``username``'s credential; False if it had none. Existing
        connections stay authenticated (their ACLs are what stops them)."""
        response = await self._send(_AlterUserScramCredentials([(username, SCRAM_SHA_512, {})], []))
        for user, code, message, _ in response.results:
            if code == RESOURCE_NOT_FOUND:
                return False
            _raise_for(code, f"deleting the SCRAM credential of {user!r}", message)
        return True

    async def scram_users(self) -> frozenset[str]:
        """Every user with a SCRAM credential."""
        response = await self._send(_DescribeUserScramCredentials(None))
        _raise_for(response.error_code, "describing SCRAM users", response.error_message)
        return frozenset(user for user, code, _, _, _ in response.results if code == 0)

    # what may the caller do? ---------------------------------------------------------

    async def topic_access(self, topics: Iterable[str]) -> dict[str, ResourceAccess]:
        names = sorted(set(topics))
        response = await self._send(_TopicAuthorizedOperations(names))
        access: dict[str, ResourceAccess] = {}
        for code, name, _internal, _partitions, bits in response.topics:
            error = kafka_errors.for_code(code).__name__ if code else None
            access[name] = ResourceAccess(_operations(bits) if not code else frozenset(), error)
        return access

    async def group_access(self, group: str, *, timeout_s: float = 30.0) -> ResourceAccess:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            try:
                coordinator = await self.client.find_coordinator(group)
                response = await self._send(_DescribeGroupWithOperations(group), coordinator)
                access = _group_access(response)
            except kafka_errors.GroupAuthorizationFailedError:
                return ResourceAccess(frozenset(), "GroupAuthorizationFailedError")
            except kafka_errors.KafkaError as exc:
                # e.g. the coordinator is not available yet: __consumer_offsets is
                # created on the cluster's first group request.
                if not exc.retriable or asyncio.get_running_loop().time() > deadline:
                    raise
            else:
                # On a fresh cluster the coordinator answers "loading" or "not the
                # coordinator" inside the response, not as an exception: ask again.
                if access.error not in _RETRIABLE_GROUP_ERRORS:
                    return access
                if asyncio.get_running_loop().time() > deadline:
                    return access
            await asyncio.sleep(0.2)

    async def transactional_write_error(self, transactional_id: str, group: str) -> str | None:
        """None if the caller may WRITE ``transactional_id`` and READ ``group`` (what
        an outbox relay's transaction needs), else the authorization error's name.

        No producer id (-1) means the coordinator changes nothing: once both ACL
        checks pass, it answers INVALID_PRODUCER_ID_MAPPING (or NOT_COORDINATOR
        on another broker), which both mean "authorized".
        """
        response = await self._send(AddOffsetsToTxnRequest(transactional_id, -1, -1, group))
        code = response.error_code
        denied = {
            kafka_errors.TransactionalIdAuthorizationFailed.errno,
            kafka_errors.GroupAuthorizationFailedError.errno,
        }
        return kafka_errors.for_code(code).__name__ if code in denied else None


_RETRIABLE_GROUP_ERRORS = frozenset(
    cls.__name__
    for cls in (
        kafka_errors.CoordinatorLoadInProgressError,
        kafka_errors.CoordinatorNotAvailableError,
        kafka_errors.NotCoordinatorError,
    )
)


def _group_access(response: Any) -> ResourceAccess:
    for described in response.groups:
        code, bits = described[0], described[-1]
        if code:
            return ResourceAccess(frozenset(), kafka_errors.for_code(code).__name__)
        return ResourceAccess(_operations(bits))
    return ResourceAccess(frozenset(), "no answer for the group")


def _decode(codes: dict[int, _T], code: int, what: str) -> _T:
    try:
        return codes[code]
    except KeyError:
        raise KafkaAdminError(f"the broker returned an ACL with {what} code {code}") from None
