"""The store: engine, models, migrations, the outbox and the read queries shared by CLI and web."""
