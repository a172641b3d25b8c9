"""Transfers: the one-key transfer on the sending site and the routing of a linked call on the receiving site."""
