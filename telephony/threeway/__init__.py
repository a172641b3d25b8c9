"""Three-way calls (三方通话): caller, this platform's agent and the other platform's agent in one conference."""
