"""Callers who misuse the line (恶意骚扰, malicious harassment): flags on numbers with their audit trail
(`flags.py`, `services.py`), how the PBX learns them (`ami.py`: an AstDB family the dialplan reads), and the
numbers that keep calling, suggested to the supervisor (`repeats.py`)."""
