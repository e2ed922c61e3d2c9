"""pytest plugin (entry point `payscore_sandbox`): the `payscore_sandbox` fixture.

Starts an isolated sandbox on a free loopback port for a merchant's own test suite.
"""

from __future__ import annotations
