"""Kafka connection settings → keyword arguments of the three Kafka clients the project uses.

kafka-python (the CLI's producer/consumer, the stack's admin client, tools), aiokafka (under Faust) and
Faust itself (`broker_credentials`) spell TLS and SASL differently; this module is the one place that
turns `Settings.kafka_*` into each spelling, so a deployment switches every client to SASL/SCRAM over
TLS with environment variables only:

    SOCRATEXT_KAFKA_SECURITY_PROTOCOL=SASL_SSL  SOCRATEXT_KAFKA_SASL_MECHANISM=SCRAM-SHA-512
    SOCRATEXT_KAFKA_SASL_USERNAME=socratext      SOCRATEXT_KAFKA_SASL_PASSWORD=...   (a Secret)
    SOCRATEXT_KAFKA_SSL_CAFILE=/etc/kafka/ca.pem

One `ssl.SSLContext` serves every client, so certificate checks are the same everywhere. The password
is read from its `SecretStr` only here, at the moment a client is built; `describe()` is what may be
logged.
"""

from __future__ import annotations

import ssl
from typing import Any

from socratext.settings import Settings

SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})


class KafkaConfigError(ValueError):
    """Settings that cannot make a working (or a safe) Kafka client; the message names no secret."""


def bootstrap_servers(settings: Settings) -> list[str]:
    return [s.strip() for s in settings.kafka_bootstrap.split(",") if s.strip()]


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SSL / SASL_SSL (None for the plaintext protocols): the configured CA bundle
    (else the system's), an optional client certificate for mutual TLS, hostname checking on unless
    `kafka_ssl_check_hostname` is off. Certificates are always verified."""
    if settings.kafka_security_protocol not in TLS_PROTOCOLS:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.kafka_ssl_cafile or None)
    if settings.kafka_ssl_certfile:
        password = settings.kafka_ssl_key_password.get_secret_value() or None
        ctx.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile or None, password)
    ctx.check_hostname = bool(settings.kafka_ssl_check_hostname)
    return ctx


def _sasl(settings: Settings) -> tuple[str, str] | None:
    if settings.kafka_security_protocol not in SASL_PROTOCOLS:
        return None
    user, password = settings.kafka_sasl_username, settings.kafka_sasl_password.get_secret_value()
    if not user or not password:
        raise KafkaConfigError(f"{settings.kafka_security_protocol} needs kafka_sasl_username and "
                               "kafka_sasl_password")
    return user, password


def security_kwargs(settings: Settings) -> dict[str, Any]:
    """`security_protocol`, `ssl_context` and the `sasl_*` arguments, spelled as both kafka-python and
    aiokafka take them (their names agree for these)."""
    out: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    ctx = ssl_context(settings)
    if ctx is not None:
        out["ssl_context"] = ctx
    sasl = _sasl(settings)
    if sasl is not None:
        out.update(sasl_mechanism=settings.kafka_sasl_mechanism, sasl_plain_username=sasl[0],
                   sasl_plain_password=sasl[1])
    return out


def kafka_python_kwargs(settings: Settings, **extra: Any) -> dict[str, Any]:
    """For `kafka.KafkaProducer` / `KafkaConsumer` / `KafkaAdminClient(**kafka_python_kwargs(s), ...)`."""
    out = {"bootstrap_servers": bootstrap_servers(settings), **security_kwargs(settings)}
    if "ssl_context" in out:
        out["ssl_check_hostname"] = bool(settings.kafka_ssl_check_hostname)
    return {**out, **extra}


def aiokafka_kwargs(settings: Settings, **extra: Any) -> dict[str, Any]:
    """For `aiokafka.AIOKafkaProducer` / `AIOKafkaConsumer`."""
    return {"bootstrap_servers": bootstrap_servers(settings), **security_kwargs(settings), **extra}


def faust_broker(settings: Settings) -> str:
    """Faust's broker URL: `kafka://host1:port1;host2:port2`."""
    return "kafka://" + ";".join(bootstrap_servers(settings))


def faust_credentials(settings: Settings) -> Any:
    """`faust.App(broker_credentials=...)`: `SASLCredentials` (with the TLS context for SASL_SSL),
    `SSLCredentials` for SSL, None for PLAINTEXT."""
    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    ctx = ssl_context(settings)
    sasl = _sasl(settings)
    if sasl is None:
        return faust.SSLCredentials(ctx)
    return faust.SASLCredentials(username=sasl[0], password=sasl[1], ssl_context=ctx,
                                 mechanism=settings.kafka_sasl_mechanism)


def describe(settings: Settings) -> dict[str, Any]:
    """What may be logged about the connection: never the password, only whether one is set."""
    out: dict[str, Any] = {"bootstrap": bootstrap_servers(settings),
                           "security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol in SASL_PROTOCOLS:
        out.update(sasl_mechanism=settings.kafka_sasl_mechanism, sasl_username=settings.kafka_sasl_username,
                   sasl_password_set=bool(settings.kafka_sasl_password.get_secret_value()))
    if settings.kafka_security_protocol in TLS_PROTOCOLS:
        out.update(ssl_cafile=settings.kafka_ssl_cafile or "(system CAs)",
                   ssl_client_cert=bool(settings.kafka_ssl_certfile),
                   ssl_check_hostname=bool(settings.kafka_ssl_check_hostname))
    return out
