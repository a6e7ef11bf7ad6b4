"""Steps to due times, lateness and the clock."""
