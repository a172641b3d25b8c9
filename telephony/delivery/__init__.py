"""Delivery: getting tickets and their events to the peer site, durably and in order."""
