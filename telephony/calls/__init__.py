"""Calls: what the controller knows about live calls on its own PBX, from AMI, keyed by Linkedid."""
