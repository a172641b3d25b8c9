"""FastAGI: the dialplan asks the controller for decisions over TCP."""
