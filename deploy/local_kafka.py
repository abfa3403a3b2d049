"""The secured local Kafka broker's material, for deploy/stack.sh (local runs only).

Everything lives under ``.local/kafka`` (``--home``) and is made once:

- ``tls/ca.pem`` + ``tls/ca.key``: a private CA (EC P-256) made here, not by
  openssl; ``tls/broker.pem``: the broker's key (PKCS#8) and certificate chain,
  SANs 127.0.0.1, ::1, localhost, kafka and ``--san`` extras. Kafka reads it
  directly (``ssl.keystore.type=PEM``), so there is no keytool or JKS.
- ``principals/<name>.json``: one SCRAM credential per principal (mode 0600).
  ``broker`` and ``operator`` are the two super users; their credentials go
  into the metadata log when the storage is formatted (``format --add-scram``),
  because nobody could create the first credential over an authenticated
  listener. Every other principal is created later by the operator
  (``python -m services.runtime.principals bootstrap``).

Commands (all output on stderr except the argfile path):

    python -m deploy.local_kafka render --home H --template T --out PROPS --client-port P
        --controller-port C [--host-port P2] [--plaintext-port X] [--bind A] [--advertise N]
        --log-dirs D [--san NAME ...]
    python -m deploy.local_kafka format-args --home H --cluster-id ID --config PROPS
    python -m deploy.local_kafka client-properties --home H [--principal operator] --out F
    python -m deploy.local_kafka compose --home H --template T --cluster-id ID  (docker-compose)
    python -m deploy.local_kafka wait-ready --home H --bootstrap B --pid PID --timeout S

A real deployment replaces the CA with the agency's PKI (the paths are plain
settings: ``ssl.keystore.location``, ``FR_KAFKA_CA_FILE``) and the credential
files with its secret store.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import secrets
import socket
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import SecretStr

from services.runtime.kafka import (
    KafkaCredentials,
    KafkaSettings,
    aiokafka_options,
    read_credentials,
    write_credentials,
)

BROKER = "broker"
OPERATOR = "operator"
SUPER_USERS = (BROKER, OPERATOR)
DEFAULT_SANS = ("127.0.0.1", "::1", "localhost", "kafka")
CERT_DAYS = 730
RENEW_BEFORE = timedelta(days=30)


def say(message: str) -> None:
    print(f"kafka: {message}", file=sys.stderr)


# --- TLS material ------------------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    general: list[x509.GeneralName] = []
    for name in names:
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            general.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(general)


def ensure_ca(tls: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = tls / "ca.pem", tls / "ca.key"
    if cert_path.exists() and key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), key
    tls.mkdir(parents=True, exist_ok=True, mode=0o755)  # ca.pem is public
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "frontier-review local Kafka CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _pem_key(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    say(f"made a local CA in {cert_path}")
    return cert, key


def _broker_cert_current(path: Path, sans: tuple[str, ...]) -> bool:
    if not path.exists():
        return False
    cert = x509.load_pem_x509_certificates(path.read_bytes())[0]
    if cert.not_valid_after_utc - datetime.now(UTC) < RENEW_BEFORE:
        return False
    present = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(present) == set(_san(sans))


def ensure_broker_certificate(tls: Path, extra_sans: tuple[str, ...]) -> Path:
    """The broker's key and chain in one PEM file; remade when SANs change or it expires.

    CN=broker: on the controller listener (mutual TLS) this certificate *is*
    the broker's principal, ``User:broker`` (ssl.principal.mapping.rules).
    """
    sans = tuple(dict.fromkeys((*DEFAULT_SANS, *extra_sans)))
    path = tls / "broker.pem"
    if _broker_cert_current(path, sans):
        return path
    ca_cert, ca_key = ensure_ca(tls)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, BROKER)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(_san(sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(
        serialization.Encoding.PEM
    )
    _write_private(path, _pem_key(key) + chain)
    say(f"made the broker certificate {path} (SANs {', '.join(sans)})")
    return path


# --- credentials ------------------------------------------------------------------


def principal_file(home: Path, name: str) -> Path:
    return home / "principals" / f"{name}.json"


def ensure_credentials(home: Path, name: str) -> KafkaCredentials:
    """The principal's credentials file, made with a random password if missing."""
    path = principal_file(home, name)
    if path.exists():
        return read_credentials(path)
    credentials = KafkaCredentials(name, SecretStr(secrets.token_urlsafe(32)))
    write_credentials(path, credentials)
    return credentials


# --- broker configuration ---------------------------------------------------------


def _jaas(listener: str, credentials: KafkaCredentials) -> str:
    # Every SASL listener needs a login section; on the inter-broker one (CLIENT)
    # it is also how the broker authenticates to itself.
    return (
        f"listener.name.{listener.lower()}.scram-sha-512.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{credentials.username}" password="{credentials.password.get_secret_value()}";'
    )


def render(args: argparse.Namespace) -> None:
    """server.properties from the template (mode 0600: it holds the broker's password).

    Listeners bind to ``--bind`` and are advertised as ``--advertise``; the optional
    HOST listener (SASL_SSL) is advertised as 127.0.0.1 for tools on a container's
    host, the optional PLAINTEXT one exists for benchmarks only.
    """
    home: Path = args.home
    tls = home / "tls"
    ensure_ca(tls)
    keystore = ensure_broker_certificate(tls, tuple(args.san))
    broker = ensure_credentials(home, BROKER)
    ensure_credentials(home, OPERATOR)
    listeners = [
        ("CLIENT", "SASL_SSL", args.client_port, args.advertise),
        ("CONTROLLER", "SSL", args.controller_port, args.advertise),
    ]
    if args.host_port:
        listeners.append(("HOST", "SASL_SSL", args.host_port, "127.0.0.1"))
    if args.plaintext_port:
        listeners.append(("PLAINTEXT", "PLAINTEXT", args.plaintext_port, args.advertise))
    values = {
        "@LISTENERS@": ",".join(f"{n}://{args.bind}:{port}" for n, _, port, _ in listeners),
        "@ADVERTISED_LISTENERS@": ",".join(f"{n}://{h}:{port}" for n, _, port, h in listeners),
        "@PROTOCOL_MAP@": ",".join(f"{n}:{proto}" for n, proto, _, _ in listeners),
        "@CONTROLLER_ENDPOINT@": f"{args.advertise}:{args.controller_port}",
        "@SASL_JAAS@": "\n".join(
            _jaas(n, broker) for n, proto, _, _ in listeners if proto == "SASL_SSL"
        ),
        "@LOG_DIRS@": str(args.log_dirs),
        "@KEYSTORE@": str(keystore),
        "@TRUSTSTORE@": str(tls / "ca.pem"),
        "@SUPER_USERS@": ";".join(f"User:{name}" for name in SUPER_USERS),
    }
    text = args.template.read_text()
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    if "@" in "".join(line for line in text.splitlines() if not line.startswith("#")):
        raise SystemExit(f"kafka: unreplaced placeholder in {args.template}")
    _write_private(args.out, text.encode())


def client_properties(args: argparse.Namespace) -> None:
    """A Java client config (kafka-*.sh --command-config) for one principal."""
    credentials = read_credentials(principal_file(args.home, args.principal))
    lines = [
        "security.protocol=SASL_SSL",
        "sasl.mechanism=SCRAM-SHA-512",
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{credentials.username}" password="{credentials.password.get_secret_value()}";',
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={args.home / 'tls' / 'ca.pem'}",
    ]
    _write_private(args.out, ("\n".join(lines) + "\n").encode())


def format_args(args: argparse.Namespace) -> None:
    """An argument file for ``java -cp libs/* @file``: the StorageTool command with the
    super users' SCRAM credentials, which must not appear on a command line (ps)."""
    home: Path = args.home
    lines = ["kafka.tools.StorageTool", "format", "--standalone"]
    lines += ["-t", args.cluster_id, "-c", str(args.config)]
    for name in SUPER_USERS:
        password = read_credentials(principal_file(home, name)).password.get_secret_value()
        lines += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]"]
    path = home / "format.args"
    _write_private(path, ("\n".join(lines) + "\n").encode())
    print(path)


# --- docker-compose ---------------------------------------------------------------

COMPOSE_CLIENTS = ("intake", "evaluation", "risk", "access", "console", "test", OPERATOR)
COMPOSE_APP_UID = 10001  # deploy/Dockerfile's user
COMPOSE_KAFKA_UID = 1000  # the apache/kafka image's user


def compose(args: argparse.Namespace) -> None:
    """Everything docker-compose.yml's broker and services need, in ``--home``.

    The broker's config, key and format arguments are owned by the Kafka
    image's user; each client gets ``clients/<name>/{credentials.json,ca.pem}``
    owned by the app's user, and each service container mounts only its own
    directory.
    """
    home: Path = args.home
    render(
        argparse.Namespace(
            home=home,
            template=args.template,
            out=home / "server.properties",
            client_port=9092,
            controller_port=9093,
            host_port=19092,
            plaintext_port=0,
            bind="0.0.0.0",  # inside the container network; the host maps 19092 only
            advertise="kafka",
            log_dirs=Path("/var/lib/kafka/data"),
            san=[],
        )
    )
    client_properties(
        argparse.Namespace(home=home, principal=OPERATOR, out=home / "operator.properties")
    )
    format_args(
        argparse.Namespace(home=home, cluster_id=args.cluster_id, config=home / "server.properties")
    )
    for name in COMPOSE_CLIENTS:
        ensure_credentials(home, name)
        client = home / "clients" / name
        client.mkdir(parents=True, exist_ok=True)
        _write_private(client / "credentials.json", principal_file(home, name).read_bytes())
        (client / "ca.pem").write_bytes((home / "tls" / "ca.pem").read_bytes())
        for path in (client, client / "credentials.json", client / "ca.pem"):
            os.chown(path, COMPOSE_APP_UID, COMPOSE_APP_UID)
    for path in (home / "principals", *(home / "principals").iterdir()):
        os.chown(path, COMPOSE_APP_UID, COMPOSE_APP_UID)
    for name in ("server.properties", "operator.properties", "format.args", "tls/broker.pem"):
        os.chown(home / name, COMPOSE_KAFKA_UID, COMPOSE_KAFKA_UID)


# --- readiness --------------------------------------------------------------------


async def _probe(settings: KafkaSettings) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**aiokafka_options(settings), request_timeout_ms=5000)
    try:
        await admin.start()
        await admin.list_topics()
    finally:
        await admin.close()


def _alive(pid: int) -> bool:
    try:
        return b"kafka.Kafka" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def has_metadata_snapshot(data_dir: Path) -> bool:
    """A metadata snapshot newer than the (empty) bootstrap one exists (see the
    note on snapshots in deploy/kafka/server.properties.template)."""
    snapshots = (data_dir / "__cluster_metadata-0").glob("*.checkpoint")
    return any(not path.name.startswith("00000000000000000000-") for path in snapshots)


def wait_ready(args: argparse.Namespace) -> int:
    """Ready = the broker answers an authenticated API request as the operator: an
    open port is not enough (KRaft opens listeners before the broker is unfenced).
    With ``--snapshot-in DIR`` also wait for the first metadata snapshot."""
    settings = KafkaSettings(
        kafka_bootstrap=args.bootstrap,
        kafka_credentials_file=principal_file(args.home, OPERATOR),
        kafka_ca_file=args.home / "tls" / "ca.pem",
    )
    host, port = args.bootstrap.rsplit(":", 1)
    deadline = time.monotonic() + args.timeout
    last = "port not open yet"
    while time.monotonic() < deadline:
        if not _alive(args.pid):
            print(f"broker process {args.pid} exited", file=sys.stderr)
            return 2
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            asyncio.run(_probe(settings))
            if args.snapshot_in is None or has_metadata_snapshot(args.snapshot_in):
                return 0
            last = "no metadata snapshot yet"
        except Exception as exc:  # any failure only means "not ready yet"
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.5)
    print(f"timed out; last error: {last}", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.local_kafka")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("render")
    p.add_argument("--home", type=Path, required=True)
    p.add_argument("--template", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--client-port", type=int, required=True)
    p.add_argument("--controller-port", type=int, required=True)
    p.add_argument("--host-port", type=int, default=0)
    p.add_argument("--plaintext-port", type=int, default=0)
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--advertise", default="127.0.0.1")
    p.add_argument("--log-dirs", type=Path, required=True)
    p.add_argument("--san", action="append", default=[])
    p = commands.add_parser("client-properties")
    p.add_argument("--home", type=Path, required=True)
    p.add_argument("--principal", default=OPERATOR)
    p.add_argument("--out", type=Path, required=True)
    p = commands.add_parser("format-args")
    p.add_argument("--home", type=Path, required=True)
    p.add_argument("--cluster-id", required=True)
    p.add_argument("--config", type=Path, required=True)
    p = commands.add_parser("compose")
    p.add_argument("--home", type=Path, required=True)
    p.add_argument("--template", type=Path, required=True)
    p.add_argument("--cluster-id", required=True)
    p = commands.add_parser("wait-ready")
    p.add_argument("--home", type=Path, required=True)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--timeout", type=float, default=90.0)
    p.add_argument("--snapshot-in", type=Path, default=None, help="a data dir")
    args = parser.parse_args(argv[1:])
    if args.command == "render":
        render(args)
        return 0
    if args.command == "format-args":
        format_args(args)
        return 0
    if args.command == "client-properties":
        client_properties(args)
        return 0
    if args.command == "compose":
        compose(args)
        return 0
    return wait_ready(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
