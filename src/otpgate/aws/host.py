"""One Lambda execution environment: what a cold start builds once and every invocation
reuses — settings (references resolved), an event loop kept for the life of the process
(the SDK's connections live on it), and the runtime.

Handlers are plain functions, as Lambda calls them: each module keeps its ``Host`` behind
``functools.cache``, so it is built on the first invocation and reused until the
environment is recycled. Nothing runs in the background between invocations: Lambda
freezes the process then, so the runtime is always opened API-only.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from otpgate import config
from otpgate.aws import refs
from otpgate.aws.clients import Clients
from otpgate.clock import Clock, SystemClock
from otpgate.config import Settings
from otpgate.runtime import Runtime

T = TypeVar("T")
log = logging.getLogger(__name__)


def settings_from(env: Mapping[str, str], loop: asyncio.AbstractEventLoop) -> Settings:
    """Settings from ``env`` with its ``ssm:``/``secretsmanager:`` references resolved
    (the SDK's own region and endpoint settings say where)."""
    if refs.references(env):
        clients = Clients()

        async def resolve() -> dict[str, str]:
            try:
                return await refs.resolve(env, clients)
            finally:
                await clients.close()

        env = loop.run_until_complete(resolve())
    return config.from_env(env, api_only=True)


class Host:
    """The event loop and settings of one execution environment (see the module
    docstring); subclasses add what their handler serves with."""

    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop,
                 clock: Clock) -> None:
        self.settings = settings
        self.loop = loop
        self.clock = clock

    @classmethod
    def prepare(cls, env: Mapping[str, str] | None = None,
                clock: Clock | None = None) -> tuple[Settings, asyncio.AbstractEventLoop,
                                                     Clock]:
        """Settings, loop and clock for a cold start from ``env`` (default: the
        process environment)."""
        env = os.environ if env is None else env
        logging.getLogger().setLevel(env.get("OTPGATE_LOG_LEVEL", "info").upper())
        loop = asyncio.new_event_loop()
        try:
            settings = settings_from(env, loop)
        except BaseException:
            loop.close()
            raise
        return settings, loop, clock or SystemClock()

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` to its end on this environment's loop."""
        asyncio.set_event_loop(self.loop)
        return self.loop.run_until_complete(work)

    def close(self) -> None:
        """Close the loop (tests; Lambda simply ends the process)."""
        self.loop.close()


class RuntimeHost(Host):
    """A host whose handler works on the runtime directly (dispatch, sweep)."""

    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop, clock: Clock,
                 runtime: Runtime) -> None:
        super().__init__(settings, loop, clock)
        self.runtime = runtime

    @classmethod
    def open(cls, env: Mapping[str, str] | None = None,
             clock: Clock | None = None) -> RuntimeHost:
        settings, loop, clock = cls.prepare(env, clock)
        try:
            asyncio.set_event_loop(loop)
            runtime = loop.run_until_complete(Runtime.open(settings, clock))
        except BaseException:
            loop.close()
            raise
        return cls(settings, loop, clock, runtime)

    def close(self) -> None:
        self.run(self.runtime.close())
        super().close()
