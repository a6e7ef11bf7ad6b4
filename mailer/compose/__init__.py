"""What is sent: rendering, localisation, calendar entries, signed links and the message bytes."""
