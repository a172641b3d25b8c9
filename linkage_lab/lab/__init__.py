"""The lab: two (or more) sites on loopback, each with its own Asterisk, Redis and controller."""
