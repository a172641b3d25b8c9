"""The controller's HTTP API (aiohttp, versioned under /v1): the app factory, the middlewares and the event
stream. Each context's routes live in its own `http.py` (delivery, tickets, calls, transfers, threeway)."""
