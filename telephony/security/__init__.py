"""Security between sites: signed requests (Standard Webhooks style)."""
