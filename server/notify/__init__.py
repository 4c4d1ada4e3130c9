"""Alarm notifications: channels (email, signed webhooks), escalation, on-call, delivery log."""
