"""The webhook dispatcher: consumes jobs.events, delivers signed webhooks, retries via topics."""
