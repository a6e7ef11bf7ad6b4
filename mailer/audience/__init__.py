"""Who is mailed: contact and registration imports, languages and countries."""
