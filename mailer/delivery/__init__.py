"""How it leaves: SMTP transactions, reply classification, rate limits, DKIM, bounces, the capture server."""
