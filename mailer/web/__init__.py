"""The web side: participants' unsubscribe and RSVP pages, the staff dashboard, the organisers' pages.

Modules::

    links.py         signed personal URLs in messages (pure; used by the service when sending)
    i18n.py          participant page wording in en, es, fr, ar
    app.py           create_app(App) -> the Starlette application; middleware (auth guard, CSRF, headers)
    auth.py          the current user, CSRF tokens, the guard middleware (sign-in, roles, CSRF, origin)
    sessions.py      server-side staff sessions: start, check, end, list (`mailer users sessions`)
    throttle.py      sign-in delays per account and client, growing with failures
    proxy.py         real client address and scheme from trusted proxies; the public origin
    inputs.py        request limits (length, control characters) and row ids from paths
    participants.py  /u/<token> (unsubscribe, RFC 8058 one-click) and /rsvp/<token>
    staff.py         /staff/...: overview, delivery log, message detail, resend, CSV export, wave progress
    organisers.py    /organise/...: timelines, preview, test send, queue / pause / resume / cancel waves
    queries.py       the read-only queries behind those pages
    charts.py        inline SVG bar chart (sends per hour or day)
    server.py        uvicorn: `mailer web`, embedded in schedule.py, or in a thread (tests)

Importing this package imports nothing heavy: the service imports :mod:`mailer.compose.links` only.
"""
