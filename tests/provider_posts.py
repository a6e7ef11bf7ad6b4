"""What each sending provider posts to its webhook, written from its public documentation with example.org
data and signed with keys made here (helpers of tests/test_provider_webhooks.py; holds no tests)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

TOPIC = "arn:aws:sns:eu-west-1:123456789012:webinar-bounces"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem"
SUBSCRIBE_URL = (
    "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn="
    "arn:aws:sns:eu-west-1:123456789012:webinar-bounces&Token=2336412f37fb687f5d51e6e2425c464d"
)
POSTMARK_USER = "hooks"


@dataclass(frozen=True)
class Ids:
    """How a provider's event names our message: its Message-ID and the provider's own id."""

    message_id: str = ""
    provider_id: str = ""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def sns_certificate(key: rsa.RSAPrivateKey, common_name: str = "sns.amazonaws.com") -> bytes:
    """A self-signed certificate for ``key``, valid through 2021, as SNS's signing certificate."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2021, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2022, 1, 1, tzinfo=UTC))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


class Fetcher:
    """The app's https GET, answering from memory and recording every URL asked for."""

    def __init__(self, documents: dict[str, bytes]) -> None:
        self.documents = documents
        self.asked: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.asked.append(url)
        if url not in self.documents:
            raise OSError(f"not found: {url}")
        return self.documents[url]


class Ses:
    """Amazon SES notifications in SNS messages (SignatureVersion 2: RSA PKCS#1 v1.5 with SHA256)."""

    name = "ses"

    def __init__(self, key: rsa.RSAPrivateKey, forger: rsa.RSAPrivateKey) -> None:
        self.key, self.forger = key, forger

    @staticmethod
    def signed_string(document: dict[str, str]) -> bytes:
        """Written out from the SNS guide: Name\\nvalue\\n for each field in this order, when present."""
        if document["Type"] == "Notification":
            names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
        else:
            names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
        return "".join(f"{n}\n{document[n]}\n" for n in names if n in document).encode()

    def document(
        self, kind: str, message: str, *, sns_id: str, signed_at: datetime, forged: bool = False, **extra: str
    ) -> dict[str, str]:
        document = {
            "Type": kind,
            "MessageId": sns_id,
            "TopicArn": TOPIC,
            "Message": message,
            "Timestamp": _iso(signed_at),
            "SignatureVersion": "2",
            "SigningCertURL": CERT_URL,
            **extra,
        }
        key = self.forger if forged else self.key
        signature = key.sign(self.signed_string(document), padding.PKCS1v15(), hashes.SHA256())
        document["Signature"] = _b64(signature)
        return document

    @staticmethod
    def post(http: httpx.Client, document: dict[str, str]) -> httpx.Response:
        headers = {"x-amz-sns-message-type": document["Type"], "content-type": "text/plain; charset=UTF-8"}
        return http.post("/webhooks/ses", content=json.dumps(document), headers=headers)

    @staticmethod
    def mail(ids: Ids, email: str) -> dict[str, object]:
        return {
            "timestamp": "2021-06-01T13:00:05.000Z",
            "messageId": ids.provider_id,
            "source": "webinars@example.org",
            "destination": [email],
            "commonHeaders": {"messageId": ids.message_id, "subject": "Invitation"},
        }

    def bounce(
        self,
        http: httpx.Client,
        email: str,
        *,
        ids: Ids,
        event_id: str,
        at: datetime,
        hard: bool = True,
        forged: bool = False,
        signed_at: datetime | None = None,
    ) -> httpx.Response:
        notification = {
            "notificationType": "Bounce",
            "bounce": {
                "bounceType": "Permanent" if hard else "Transient",
                "bounceSubType": "General",
                "bouncedRecipients": [
                    {
                        "emailAddress": email,
                        "action": "failed",
                        "status": "5.1.1" if hard else "4.2.2",
                        "diagnosticCode": "smtp; 550 5.1.1 user unknown"
                        if hard
                        else "smtp; 452 4.2.2 mailbox full",
                    }
                ],
                "timestamp": _iso(at),
                "feedbackId": f"feedback-{event_id}",
                "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
            },
            "mail": self.mail(ids, email),
        }
        document = self.document(
            "Notification",
            json.dumps(notification),
            sns_id=event_id,
            signed_at=signed_at or at,
            forged=forged,
        )
        return self.post(http, document)

    def complaint(
        self,
        http: httpx.Client,
        email: str,
        *,
        ids: Ids,
        event_id: str,
        at: datetime,
        feedback_type: str = "abuse",
    ) -> httpx.Response:
        notification = {
            "notificationType": "Complaint",
            "complaint": {
                "complainedRecipients": [{"emailAddress": email}],
                "timestamp": _iso(at),
                "feedbackId": f"feedback-{event_id}",
                "complaintFeedbackType": feedback_type,
                "userAgent": "Mail.example.net FBL",
            },
            "mail": self.mail(ids, email),
        }
        return self.post(
            http, self.document("Notification", json.dumps(notification), sns_id=event_id, signed_at=at)
        )

    def delivered(
        self, http: httpx.Client, email: str, *, ids: Ids, event_id: str, at: datetime
    ) -> httpx.Response:
        notification = {
            "notificationType": "Delivery",
            "delivery": {
                "timestamp": _iso(at),
                "recipients": [email],
                "smtpResponse": "250 2.6.0 Message received",
                "reportingMTA": "a8-70.smtp-out.amazonses.com",
            },
            "mail": self.mail(ids, email),
        }
        return self.post(
            http, self.document("Notification", json.dumps(notification), sns_id=event_id, signed_at=at)
        )


class SendGrid:
    """SendGrid Event Webhook posts, signed ECDSA P-256 over timestamp + body."""

    name = "sendgrid"

    def __init__(self, key: ec.EllipticCurvePrivateKey, forger: ec.EllipticCurvePrivateKey) -> None:
        self.key, self.forger = key, forger

    def verification_key(self) -> str:
        """The public key as SendGrid's settings page shows it: base64 DER."""
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return _b64(der)

    def post(
        self,
        http: httpx.Client,
        events: list[dict[str, object]],
        *,
        signed_at: datetime,
        forged: bool = False,
    ) -> httpx.Response:
        body = json.dumps(events).encode()
        stamp = str(int(signed_at.timestamp()))
        signature = (self.forger if forged else self.key).sign(
            stamp.encode() + body, ec.ECDSA(hashes.SHA256())
        )
        headers = {
            "content-type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": _b64(signature),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        }
        return http.post("/webhooks/sendgrid", content=body, headers=headers)

    @staticmethod
    def event(
        name: str, email: str, *, ids: Ids, event_id: str, at: datetime, **fields: object
    ) -> dict[str, object]:
        return {
            "email": email,
            "timestamp": int(at.timestamp()),
            "smtp-id": ids.message_id,
            "event": name,
            "category": ["invitation"],
            "sg_event_id": event_id,
            "sg_message_id": f"{ids.provider_id}.filterdrecv-5645d9c87f-6r8wm-1-60B6152B-1.0"
            if ids.provider_id
            else "",
            **fields,
        }

    def bounce(
        self,
        http: httpx.Client,
        email: str,
        *,
        ids: Ids,
        event_id: str,
        at: datetime,
        hard: bool = True,
        forged: bool = False,
        signed_at: datetime | None = None,
    ) -> httpx.Response:
        if hard:
            event = self.event(
                "bounce",
                email,
                ids=ids,
                event_id=event_id,
                at=at,
                reason="550 5.1.1 user unknown",
                status="5.1.1",
                type="bounce",
            )
        else:
            event = self.event(
                "deferred",
                email,
                ids=ids,
                event_id=event_id,
                at=at,
                response="452 4.2.2 mailbox full",
                attempt="3",
            )
        return self.post(http, [event], signed_at=signed_at or at, forged=forged)

    def complaint(
        self, http: httpx.Client, email: str, *, ids: Ids, event_id: str, at: datetime
    ) -> httpx.Response:
        return self.post(
            http, [self.event("spamreport", email, ids=ids, event_id=event_id, at=at)], signed_at=at
        )

    def delivered(
        self, http: httpx.Client, email: str, *, ids: Ids, event_id: str, at: datetime
    ) -> httpx.Response:
        event = self.event("delivered", email, ids=ids, event_id=event_id, at=at, response="250 2.0.0 OK")
        return self.post(http, [event], signed_at=at)


class Postmark:
    """Postmark webhook posts behind HTTP basic auth."""

    name = "postmark"

    def __init__(self, password: str) -> None:
        self.password = password

    def post(self, http: httpx.Client, event: dict[str, object], *, forged: bool = False) -> httpx.Response:
        password = "guessed-password" if forged else self.password
        return http.post("/webhooks/postmark", json=event, auth=(POSTMARK_USER, password))

    @staticmethod
    def record(kind: str, email: str, *, ids: Ids, event_id: str, at: datetime) -> dict[str, object]:
        return {
            "RecordType": "SpamComplaint" if kind == "SpamComplaint" else "Bounce",
            "ID": int(event_id),
            "Type": kind,
            "TypeCode": {"HardBounce": 1, "Transient": 2, "SpamComplaint": 512}[kind],
            "Name": kind,
            "Tag": "invitation",
            "MessageID": ids.provider_id or "00000000-0000-0000-0000-000000000000",
            "ServerID": 23,
            "MessageStream": "outbound",
            "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
            "Details": "smtp;550 5.1.1 user unknown"
            if kind == "HardBounce"
            else "smtp;452 4.2.2 mailbox full",
            "Email": email,
            "From": "webinars@example.org",
            "BouncedAt": at.isoformat(),
            "DumpAvailable": False,
            "Inactive": kind != "Transient",
            "CanActivate": True,
            "Subject": "Invitation",
        }

    def bounce(
        self,
        http: httpx.Client,
        email: str,
        *,
        ids: Ids,
        event_id: str,
        at: datetime,
        hard: bool = True,
        forged: bool = False,
        signed_at: datetime | None = None,
    ) -> httpx.Response:
        event = self.record("HardBounce" if hard else "Transient", email, ids=ids, event_id=event_id, at=at)
        return self.post(http, event, forged=forged)

    def complaint(
        self, http: httpx.Client, email: str, *, ids: Ids, event_id: str, at: datetime
    ) -> httpx.Response:
        return self.post(http, self.record("SpamComplaint", email, ids=ids, event_id=event_id, at=at))

    def delivered(
        self, http: httpx.Client, email: str, *, ids: Ids, event_id: str, at: datetime
    ) -> httpx.Response:
        event = {
            "RecordType": "Delivery",
            "ServerID": 23,
            "MessageStream": "outbound",
            "MessageID": ids.provider_id or "00000000-0000-0000-0000-000000000000",
            "Recipient": email,
            "Tag": "invitation",
            "DeliveredAt": at.isoformat(),
            "Details": f"Test delivery webhook details {event_id}",
        }
        return self.post(http, event)


class Mailgun:
    """Mailgun webhook posts, signed HMAC-SHA256 over timestamp + token."""

    name = "mailgun"

    def __init__(self, key: str) -> None:
        self.key = key

    def post(
        self, http: httpx.Client, data: dict[str, object], *, signed_at: datetime, forged: bool = False
    ) -> httpx.Response:
        stamp, token = str(int(signed_at.timestamp())), secrets.token_hex(25)
        key = "key-guessed" if forged else self.key
        signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
        body = {"signature": {"timestamp": stamp, "token": token, "signature": signature}, "event-data": data}
        return http.post("/webhooks/mailgun", json=body)

    @staticmethod
    def data(
        event: str, email: str, *, ids: Ids, event_id: str, at: datetime, **fields: object
    ) -> dict[str, object]:
        return {
            "event": event,
            "id": event_id,
            "timestamp": at.timestamp(),
            "log-level": "error",
            "recipient": email,
            "recipient-domain": email.rpartition("@")[2],
            "message": {
                "headers": {"message-id": ids.message_id.strip("<>"), "to": email, "subject": "Invitation"}
            },
            **fields,
        }

    def bounce(
        self,
        http: httpx.Client,
        email: str,
        *,
        ids: Ids,
        event_id: str,
        at: datetime,
        hard: bool = True,
        forged: bool = False,
        signed_at: datetime | None = None,
    ) -> httpx.Response:
        status = (
            {
                "code": 550,
                "message": "5.1.1 user unknown",
                "enhanced-code": "5.1.1",
                "mx-host": "mx.example.net",
            }
            if hard
            else {
                "code": 452,
                "message": "4.2.2 mailbox full",
                "enhanced-code": "4.2.2",
                "mx-host": "mx.example.net",
            }
        )
        data = self.data(
            "failed",
            email,
            ids=ids,
            event_id=event_id,
            at=at,
            severity="permanent" if hard else "temporary",
            reason="bounce" if hard else "generic",
            **{"delivery-status": status},
        )
        return self.post(http, data, signed_at=signed_at or at, forged=forged)

    def complaint(
        self, http: httpx.Client, email: str, *, ids: Ids, event_id: str, at: datetime
    ) -> httpx.Response:
        return self.post(
            http, self.data("complained", email, ids=ids, event_id=event_id, at=at), signed_at=at
        )

    def delivered(
        self, http: httpx.Client, email: str, *, ids: Ids, event_id: str, at: datetime
    ) -> httpx.Response:
        status = {"code": 250, "message": "OK", "mx-host": "mx.example.net"}
        data = self.data("delivered", email, ids=ids, event_id=event_id, at=at, **{"delivery-status": status})
        return self.post(http, data, signed_at=at)


def ids_for(provider: str, message_id: str, provider_id: str) -> Ids:
    """The ids the provider's event carries for a message: each names it its own way."""
    if (
        provider == "mailgun"
    ):  # Mailgun relays our Message-ID and answers "250 Great success": no id of its own
        return Ids(message_id=message_id)
    if provider == "postmark":  # Postmark's events carry only its own MessageID
        return Ids(provider_id=provider_id)
    return Ids(message_id=message_id, provider_id=provider_id)


AGES = {
    "ses": timedelta(hours=1),
    "sendgrid": timedelta(minutes=10),
    "postmark": timedelta(hours=12),
    "mailgun": timedelta(minutes=10),
}
