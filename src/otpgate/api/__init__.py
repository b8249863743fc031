"""The HTTP API: a Litestar app over ``otpgate.service.OtpService``.

``otpgate.api.app.create_app(settings)`` builds it; ``otpgate.api.app:from_env`` is the
uvicorn factory. ``ApiContext`` is what the route handlers share: the settings, and the
runtime the app's lifespan opens.
"""

from __future__ import annotations

from otpgate.api.auth import Authenticator
from otpgate.clock import Clock
from otpgate.config import Settings
from otpgate.dispatch import subscription_for
from otpgate.readiness import Readiness
from otpgate.runtime import Runtime


class ApiContext:
    """Settings, clock, and — between start-up and shut-down — the runtime."""

    __slots__ = ("_authenticator", "_readiness", "_runtime", "clock", "settings")

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self._runtime: Runtime | None = None
        self._authenticator: Authenticator | None = None
        self._readiness: Readiness | None = None

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("the API is not started (its lifespan has not run)")
        return self._runtime

    def authenticator(self) -> Authenticator:
        if self._authenticator is None:
            raise RuntimeError("the API is not started (its lifespan has not run)")
        return self._authenticator

    def readiness(self) -> Readiness:
        if self._readiness is None:
            raise RuntimeError("the API is not started (its lifespan has not run)")
        return self._readiness

    def attach(self, runtime: Runtime | None) -> None:
        """Bind the runtime the lifespan opened (``None`` once it is closed)."""
        self._runtime = runtime
        self._authenticator = (
            None if runtime is None else Authenticator(runtime.backend.store, self.clock,
                                                       audit=runtime.audit))
        self._readiness = None if runtime is None else Readiness(
            runtime.backend.store, runtime.backend.bus, self.clock,
            [subscription_for(name).name for name in runtime.driver_urls],
            self.settings.server.ready_max_due_age)
