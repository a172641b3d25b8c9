"""AMI: the controller's session with its own PBX."""
