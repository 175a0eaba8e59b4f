"""What the email service tells us about sent mail, through anymail's tracking webhooks.

anymail receives the service's POST at /anymail/<service>/tracking/ (pastq/urls.py), checks
its basic auth against ANYMAIL["WEBHOOK_SECRET"] (the ANYMAIL_WEBHOOK_SECRET variable), turns
it into an AnymailTrackingEvent and sends anymail.signals.tracking; the receiver here, connected
in NotificationsConfig.ready(), records what matters:

- bounced, complained, rejected: the address is undeliverable; nothing more is sent to it.
- unsubscribed at the service (its own unsubscribe link, a suppression): the student with that
  address is switched off entirely, as if they had used our link for "all".
- any of those about a message in the ledger: a line in that row's detail (its status stays).

Other events (delivered, opened, deferred, ...) are ignored. An exception here becomes a 500,
which services take as "try again later": the writes are idempotent, so a retry is harmless.
"""

import logging

from anymail.signals import AnymailTrackingEvent, EventType
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from notifications.models import Notification, UndeliverableAddress
from notifications.unsubscribe import unsubscribe_apply

logger = logging.getLogger(__name__)

UNDELIVERABLE_EVENTS = frozenset({EventType.BOUNCED, EventType.COMPLAINED, EventType.REJECTED})
RECORDED_EVENTS = UNDELIVERABLE_EVENTS | {EventType.UNSUBSCRIBED}

_ADDRESS_MAX_LENGTH = UndeliverableAddress._meta.get_field("address").max_length
_MESSAGE_ID_MAX_LENGTH = UndeliverableAddress._meta.get_field("message_id").max_length


def tracking_event_record(sender, event: AnymailTrackingEvent, esp_name: str, **kwargs) -> None:
    """Receiver of anymail.signals.tracking."""
    if event.event_type not in RECORDED_EVENTS:
        return
    address = (event.recipient or "").strip().lower()
    description = _event_description(event)
    message_id = (event.message_id or "")[:_MESSAGE_ID_MAX_LENGTH]
    with transaction.atomic():
        if address and len(address) <= _ADDRESS_MAX_LENGTH:
            if event.event_type in UNDELIVERABLE_EVENTS:
                undeliverable_address_record(address=address, reason=event.event_type,
                                             description=description, message_id=message_id)
            else:
                email_unsubscribe_all(address=address)
        else:
            logger.warning("%s %s event without a usable recipient (%r)", esp_name,
                           event.event_type, event.recipient)
        if message_id:
            ledger_event_note(message_id=message_id, note=_ledger_note(event, esp_name))


def undeliverable_address_record(*, address: str, reason: str, description: str = "",
                                 message_id: str = "") -> UndeliverableAddress:
    """Upsert on the address: a second bounce updates the row with the latest event."""
    row, created = UndeliverableAddress.objects.update_or_create(
        address=address.lower(),
        defaults={"reason": reason, "description": description, "message_id": message_id,
                  "recorded_at": timezone.now()},
    )
    logger.info("%s marked undeliverable (%s)%s", address, reason, "" if created else ", again")
    return row


def email_unsubscribe_all(*, address: str) -> bool:
    """Master switch off for the user with this address; False when no user has it (staff
    addresses from settings, or an account since deleted) or it was off already."""
    user_id = (get_user_model().objects.filter(email=address.lower())
               .values_list("pk", flat=True).first())  # stored lower case (core.User.save)
    if user_id is None:
        logger.info("Unsubscribe at the email service from %s, which no user has", address)
        return False
    changed = unsubscribe_apply(user_id, "all")
    logger.info("User %s unsubscribed from all email at the email service%s", user_id,
                "" if changed else " (already off)")
    return changed


def ledger_event_note(*, message_id: str, note: str) -> int:
    """Add the note as a line of the detail of the ledger rows that sent this message (the
    sender stores the service's message id), once: services resend a webhook they are unsure
    was received. The status is left as it is: the send happened. Returns rows changed."""
    changed = 0
    for notification in Notification.objects.filter(message_id=message_id).only("id", "detail"):
        if note in notification.detail.splitlines():
            continue
        notification.detail = f"{notification.detail}\n{note}" if notification.detail else note
        notification.save(update_fields=["detail"])
        changed += 1
    return changed


def _event_description(event: AnymailTrackingEvent) -> str:
    parts = [str(part).strip() for part in (event.description, event.mta_response) if part]
    return " | ".join(part for part in parts if part)


def _ledger_note(event: AnymailTrackingEvent, esp_name: str) -> str:
    when = event.timestamp.isoformat() if event.timestamp else "time unknown"
    line = f"{esp_name} {event.event_type} at {when}"
    if event.reject_reason:
        line += f" ({event.reject_reason})"
    description = _event_description(event)
    if description:
        line += f": {description}"
    # One line per event, so a resent webhook is recognised by its line.
    return " ".join(line.split())
