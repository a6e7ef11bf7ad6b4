"""``[bounces.webhooks.<provider>]``: the sending providers whose bounce and complaint webhooks are accepted.

Each provider is off unless its table says ``enabled = true``. Secrets are only ever read from the
environment variable the table names (``secret_env``); the config file holds none:

    ses        no secret: each SNS message is signed with a certificate SNS publishes; ``topic_arns``
               (required) lists the topics accepted
    sendgrid   ``secret_env``: the Signed Event Webhook's public key (base64 DER as SendGrid shows it, or PEM)
    postmark   ``username`` and ``secret_env`` (the password): HTTP basic auth set on the webhook's URL
    mailgun    ``secret_env``: the HTTP webhook signing key

``max_age`` is how old a request's signed timestamp may be (Postmark signs none: the event's own time)
before the request is refused as a replay.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

from mailer.config.reader import TableReader

PROVIDERS = ("ses", "sendgrid", "postmark", "mailgun")
_SECRET_ENV = {
    "ses": "",
    "sendgrid": "SENDGRID_WEBHOOK_PUBLIC_KEY",
    "postmark": "POSTMARK_WEBHOOK_PASSWORD",
    "mailgun": "MAILGUN_WEBHOOK_SIGNING_KEY",
}
_MAX_AGE = {"ses": "1h", "sendgrid": "10m", "postmark": "12h", "mailgun": "10m"}


@dataclass(frozen=True)
class ProviderWebhook:
    """One provider's webhook at ``/webhooks/<provider>``; see the module docstring for each field's use."""

    provider: str  # ses | sendgrid | postmark | mailgun
    secret_env: str = ""
    max_age: timedelta = timedelta(minutes=10)
    username: str = ""  # postmark: the basic-auth user name
    topic_arns: tuple[str, ...] = ()  # ses: accepted SNS topics

    @property
    def secret(self) -> str | None:
        """The secret from ``$<secret_env>``; None when unset or empty."""
        return (os.environ.get(self.secret_env) or None) if self.secret_env else None


@dataclass(frozen=True)
class ProviderWebhooks:
    """The enabled provider webhooks, by provider name."""

    providers: tuple[ProviderWebhook, ...] = ()

    def get(self, provider: str) -> ProviderWebhook | None:
        """The settings of ``provider`` when it is enabled, else None."""
        return next((hook for hook in self.providers if hook.provider == provider), None)


def read_provider_webhooks(table: TableReader) -> ProviderWebhooks:
    """``[bounces.webhooks]``: one table per provider; raises ConfigError naming the key and the fix."""
    enabled: list[ProviderWebhook] = []
    for name in table:
        if name not in PROVIDERS:
            raise table.fail(name, "unknown provider", f"known: {', '.join(PROVIDERS)}")
        hook = table.table(name)
        if not hook.get("enabled", bool, False):
            hook.asked.update(hook.data)  # a switched-off provider may keep its other keys
            continue
        secret_env = hook.get("secret_env", str, _SECRET_ENV[name]).strip()
        if name != "ses" and not secret_env:
            raise hook.fail("secret_env", "empty", "name the environment variable holding the secret")
        username = hook.get("username", str, "") if name == "postmark" else ""
        if name == "postmark" and not username:
            raise hook.fail("username", "empty", "the user name set in the webhook URL's basic auth")
        topics = hook.strings("topic_arns", ()) if name == "ses" else ()
        if name == "ses" and not topics:
            raise hook.fail(
                "topic_arns",
                "empty",
                'list the SNS topics, e.g. ["arn:aws:sns:eu-west-1:123456789012:bounces"]',
            )
        enabled.append(
            ProviderWebhook(
                provider=name,
                secret_env="" if name == "ses" else secret_env,
                max_age=hook.interval("max_age", _MAX_AGE[name]),
                username=username,
                topic_arns=topics,
            )
        )
    return ProviderWebhooks(tuple(enabled))
