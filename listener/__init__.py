"""qbo-sync's webhook listener: a small aiohttp server that verifies QBO's webhooks and stores
them in the database (qbo_webhook_log), completes OAuth redirects, and answers health checks.
Everything else happens in the database. Started with `qbo-sync listen`."""

from listener.app import ListenerConfig, make_app

__all__ = ["ListenerConfig", "make_app"]
