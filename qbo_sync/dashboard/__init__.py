"""The sync status page, `qbo-sync dashboard` (app.py; docs/dashboard.md)."""
