"""Dispatch: dispatch events in, provider calls out (``Dispatcher``), with the outcome
table (``outcome.classify``) apart from the I/O."""

from otpgate.dispatch.dispatcher import (
    DEFAULT_CONCURRENCY,
    DEFAULT_LEASE,
    DEFAULT_MAX_DELIVERIES,
    DispatchData,
    Dispatcher,
    subscription_for,
    without_seal,
)

__all__ = ["DEFAULT_CONCURRENCY", "DEFAULT_LEASE", "DEFAULT_MAX_DELIVERIES", "DispatchData",
           "Dispatcher", "subscription_for", "without_seal"]
