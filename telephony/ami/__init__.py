"""AMI: the controller's session with its own PBX."""

from collections.abc import Awaitable, Callable
from typing import Any

AmiSend = Callable[[dict[str, str]], Awaitable[Any]]  # sends one action, returns Asterisk's reply
