"""The same ASGI app `working serve` builds, as a target for Granian (`bench.granian_app:app`).

The database is migrated beforehand by the harness; settings come from the environment.
"""

from __future__ import annotations

from working.runtime import health, server
from working.runtime.settings import from_environ

_settings = from_environ()
app = server.build(_settings, health.install(_settings)).app
