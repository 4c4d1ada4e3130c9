"""Passwords, tokens, API keys and the login limiter."""
