"""``otpgate.aws.dispatch.handler``: one function per driver, fed by that driver's SQS
queue (subscribed to the dispatch topic with a filter policy on the ``driver``
attribute), sending with the driver ``OTPGATE_DRIVER`` names.

It is the dispatcher ``otpgate worker`` runs — the send ledger makes a redelivered or
republished event a no-op — over SQS batches (``otpgate.aws.batch``). Reserved
concurrency on the function bounds the calls in flight to the provider.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from otpgate.aws.batch import Batch
from otpgate.aws.host import RuntimeHost
from otpgate.bus.sns_sqs import SnsSqsBus
from otpgate.clock import Clock
from otpgate.dispatch import Dispatcher
from otpgate.errors import ConfigurationError


class DispatchHost(RuntimeHost):
    """The runtime, the one driver and its dispatcher of one environment."""

    batch: Batch
    dispatcher: Dispatcher

    @classmethod
    def open(cls, env: Mapping[str, str] | None = None,
             clock: Clock | None = None) -> DispatchHost:
        host = super().open(env, clock)
        assert isinstance(host, DispatchHost)
        try:
            host._serve()
        except BaseException:
            host.close()
            raise
        return host

    def _serve(self) -> None:
        settings, runtime = self.settings, self.runtime
        name = settings.aws.driver
        if not name or name not in runtime.driver_urls:
            raise ConfigurationError(
                f"OTPGATE_DRIVER must name one of the configured drivers "
                f"({', '.join(sorted(runtime.driver_urls))}), not {name!r}")
        [self.dispatcher] = runtime.dispatchers([name])  # its driver closes with the runtime
        bus = runtime.backend.bus
        if not isinstance(bus, SnsSqsBus):
            raise ConfigurationError("the dispatch function needs a dynamodb:// store")
        self.batch = Batch(self.dispatcher.handle, self.dispatcher.limits(), bus.sqs)

    def invoke(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return self.run(self.batch(event))


@functools.cache
def _host() -> DispatchHost:
    return DispatchHost.open()


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point: an SQS batch in, ``batchItemFailures`` out."""
    return _host().invoke(event, context)
