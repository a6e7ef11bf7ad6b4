"""Wording of the participants' pages (unsubscribe, RSVP) in English, Spanish, French and Arabic.

The language is the contact's (``pt-BR`` -> ``pt`` -> English); dates are shown with Babel in the contact's
zone and language. Arabic pages are right-to-left. Every language has every key (checked by the tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mailer.compose.localise import date_time, locale_for
from mailer.timeline.clock import require_aware
from mailer.zones import UnknownZoneError, resolve_zone

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "unsubscribe_title": "Unsubscribe",
        "unsubscribe_question": "Stop all emails about the {series} to {email}?",
        "unsubscribe_button": "Unsubscribe",
        "unsubscribed_title": "You are unsubscribed",
        "unsubscribed_body": "We will send no more emails to {email}, including messages already scheduled.",
        "already_unsubscribed": "{email} was already unsubscribed. You will receive no more emails from us.",
        "rsvp_yes_title": "Confirm your attendance",
        "rsvp_yes_question": "Register for this webinar?",
        "rsvp_yes_button": "I will attend",
        "rsvp_no_title": "Cannot attend?",
        "rsvp_no_question": "Tell the organisers you cannot attend this webinar?",
        "rsvp_no_button": "I cannot attend",
        "rsvp_yes_done_title": "You are registered",
        "rsvp_yes_done": "Thank you. We will send you reminders with the connection details before the webinar.",
        "rsvp_no_done_title": "Thank you for letting us know",
        "rsvp_no_done": "We will not send you further invitations for this webinar.",
        "rsvp_change_yes": "Changed your mind? You can still register:",
        "rsvp_change_no": "Cannot attend after all?",
        "rsvp_denied": "Your registration for this webinar is with the organisers. Please reply to our email.",
        "rsvp_unsubscribed": "Note: you have unsubscribed, so you will receive no reminders by email.",
        "session_started": "This webinar has already taken place, so your answer can no longer be recorded.",
        "session_cancelled": "This webinar has been cancelled.",
        "when": "When",
        "bad_link_title": "This link is not valid",
        "bad_link_body": "Please open the link exactly as it appears in your email, or reply to our email.",
    },
    "es": {
        "unsubscribe_title": "Darse de baja",
        "unsubscribe_question": "¿Dejar de recibir correos sobre {series} en {email}?",
        "unsubscribe_button": "Darme de baja",
        "unsubscribed_title": "Se ha dado de baja",
        "unsubscribed_body": "No enviaremos más correos a {email}, tampoco los mensajes ya programados.",
        "already_unsubscribed": "{email} ya estaba dado de baja. No recibirá más correos nuestros.",
        "rsvp_yes_title": "Confirme su asistencia",
        "rsvp_yes_question": "¿Inscribirse en este webinario?",
        "rsvp_yes_button": "Asistiré",
        "rsvp_no_title": "¿No puede asistir?",
        "rsvp_no_question": "¿Informar a los organizadores de que no podrá asistir a este webinario?",
        "rsvp_no_button": "No podré asistir",
        "rsvp_yes_done_title": "Está inscrito",
        "rsvp_yes_done": "Gracias. Antes del webinario le enviaremos recordatorios con los datos de conexión.",
        "rsvp_no_done_title": "Gracias por avisarnos",
        "rsvp_no_done": "No le enviaremos más invitaciones para este webinario.",
        "rsvp_change_yes": "¿Ha cambiado de opinión? Todavía puede inscribirse:",
        "rsvp_change_no": "¿Finalmente no puede asistir?",
        "rsvp_denied": "Su inscripción en este webinario está en manos de los organizadores. Responda a nuestro correo, por favor.",
        "rsvp_unsubscribed": "Nota: se ha dado de baja, por lo que no recibirá recordatorios por correo.",
        "session_started": "Este webinario ya ha tenido lugar; ya no es posible registrar su respuesta.",
        "session_cancelled": "Este webinario ha sido cancelado.",
        "when": "Cuándo",
        "bad_link_title": "Este enlace no es válido",
        "bad_link_body": "Abra el enlace tal como aparece en su correo, o responda a nuestro correo.",
    },
    "fr": {
        "unsubscribe_title": "Se désabonner",
        "unsubscribe_question": "Ne plus recevoir de courriels concernant {series} à l’adresse {email} ?",
        "unsubscribe_button": "Me désabonner",
        "unsubscribed_title": "Vous êtes désabonné(e)",
        "unsubscribed_body": "Nous n’enverrons plus de courriels à {email}, y compris les messages déjà programmés.",
        "already_unsubscribed": "{email} était déjà désabonné(e). Vous ne recevrez plus de courriels de notre part.",
        "rsvp_yes_title": "Confirmez votre participation",
        "rsvp_yes_question": "Vous inscrire à ce webinaire ?",
        "rsvp_yes_button": "Je participerai",
        "rsvp_no_title": "Vous ne pouvez pas participer ?",
        "rsvp_no_question": "Informer les organisateurs que vous ne pourrez pas participer à ce webinaire ?",
        "rsvp_no_button": "Je ne pourrai pas participer",
        "rsvp_yes_done_title": "Vous êtes inscrit(e)",
        "rsvp_yes_done": "Merci. Nous vous enverrons avant le webinaire des rappels avec les informations de connexion.",
        "rsvp_no_done_title": "Merci de nous avoir prévenus",
        "rsvp_no_done": "Nous ne vous enverrons plus d’invitations pour ce webinaire.",
        "rsvp_change_yes": "Vous avez changé d’avis ? Vous pouvez encore vous inscrire :",
        "rsvp_change_no": "Vous ne pouvez finalement pas participer ?",
        "rsvp_denied": "Votre inscription à ce webinaire est entre les mains des organisateurs. Merci de répondre à notre courriel.",
        "rsvp_unsubscribed": "Remarque : vous êtes désabonné(e) et ne recevrez donc pas de rappels par courriel.",
        "session_started": "Ce webinaire a déjà eu lieu : votre réponse ne peut plus être enregistrée.",
        "session_cancelled": "Ce webinaire a été annulé.",
        "when": "Date",
        "bad_link_title": "Ce lien n’est pas valide",
        "bad_link_body": "Ouvrez le lien tel qu’il figure dans votre courriel, ou répondez à notre courriel.",
    },
    "ar": {
        "unsubscribe_title": "إلغاء الاشتراك",
        "unsubscribe_question": "هل تريد إيقاف جميع الرسائل المتعلقة بـ{series} إلى {email}؟",
        "unsubscribe_button": "إلغاء الاشتراك",
        "unsubscribed_title": "تم إلغاء اشتراكك",
        "unsubscribed_body": "لن نرسل أي رسائل أخرى إلى {email}، بما في ذلك الرسائل المجدولة مسبقًا.",
        "already_unsubscribed": "تم إلغاء اشتراك {email} من قبل. لن تصلك أي رسائل أخرى منا.",
        "rsvp_yes_title": "تأكيد الحضور",
        "rsvp_yes_question": "هل تريد التسجيل في هذه الندوة الإلكترونية؟",
        "rsvp_yes_button": "سأحضر",
        "rsvp_no_title": "لا تستطيع الحضور؟",
        "rsvp_no_question": "هل تريد إبلاغ المنظمين بأنك لن تتمكن من حضور هذه الندوة الإلكترونية؟",
        "rsvp_no_button": "لا أستطيع الحضور",
        "rsvp_yes_done_title": "تم تسجيلك",
        "rsvp_yes_done": "شكرًا لك. سنرسل إليك قبل الندوة رسائل تذكير تتضمن تفاصيل الاتصال.",
        "rsvp_no_done_title": "شكرًا لإبلاغنا",
        "rsvp_no_done": "لن نرسل إليك دعوات أخرى لهذه الندوة الإلكترونية.",
        "rsvp_change_yes": "هل غيّرت رأيك؟ لا يزال بإمكانك التسجيل:",
        "rsvp_change_no": "لن تتمكن من الحضور في النهاية؟",
        "rsvp_denied": "تسجيلك في هذه الندوة قيد النظر لدى المنظمين. يُرجى الرد على رسالتنا.",
        "rsvp_unsubscribed": "ملاحظة: لقد ألغيت اشتراكك، لذا لن تصلك رسائل تذكير بالبريد الإلكتروني.",
        "session_started": "انعقدت هذه الندوة بالفعل، لذا لم يعد من الممكن تسجيل ردّك.",
        "session_cancelled": "أُلغيت هذه الندوة الإلكترونية.",
        "when": "الموعد",
        "bad_link_title": "هذا الرابط غير صالح",
        "bad_link_body": "يُرجى فتح الرابط كما ورد في رسالتك تمامًا، أو الرد على رسالتنا.",
    },
}

RTL = frozenset({"ar", "fa", "he", "ur"})


@dataclass(frozen=True)
class PageLanguage:
    """The language a participant page is shown in."""

    code: str  # one of STRINGS
    direction: str  # "ltr" | "rtl"

    def t(self, key: str, **values: object) -> str:
        """The wording ``key`` in this language with ``{name}`` fields filled in (KeyError for an unknown key)."""
        text = STRINGS[self.code][key]
        return text.format(**values) if values else text


def page_language(tag: str) -> PageLanguage:
    """The best page language for a BCP 47 tag: exact, then the primary subtag, then English."""
    parts = tag.replace("_", "-").lower().split("-")
    for candidate in ("-".join(parts[:n]) for n in range(len(parts), 0, -1)):
        if candidate in STRINGS:
            return PageLanguage(candidate, "rtl" if candidate in RTL else "ltr")
    return PageLanguage("en", "ltr")


def local_datetime(moment: datetime, zone_name: str, language: str) -> str:
    """``moment`` in ``zone_name`` (UTC when unknown) and ``language`` exactly as the messages write it (full
    date, short time, then the place and GMT offset: :func:`mailer.compose.localise.date_time`)."""
    require_aware(moment, "moment")
    try:
        zone = resolve_zone(zone_name)
    except UnknownZoneError:
        zone = resolve_zone("UTC")
    return date_time(moment.astimezone(zone), locale_for(language))


__all__ = ["STRINGS", "PageLanguage", "local_datetime", "page_language"]
