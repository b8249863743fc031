"""Drivers: one file per provider, chosen by URL scheme (``twilio://SID:TOKEN@+1555...``).

``open_driver`` opens one by URL through ``otpgate.registry``; ``base`` is the port.
"""

from __future__ import annotations

import dataclasses

from otpgate import registry, urls
from otpgate.drivers.base import Driver, DriverContext, driver_name


def open_driver(url: str, ctx: DriverContext) -> Driver:
    """Open the driver ``url`` names, under its ``name=`` (default: its scheme)."""
    factory = registry.load(registry.DRIVERS, url, "driver")
    parsed = urls.parse(url)
    driver: Driver = factory(parsed, dataclasses.replace(ctx, name=driver_name(parsed)))
    return driver
