"""Readers of the one event stream: metrics now; logs, WebSockets, webhooks next."""
