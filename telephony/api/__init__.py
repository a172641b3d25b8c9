"""The controller's HTTP API (aiohttp, versioned under /v1)."""
