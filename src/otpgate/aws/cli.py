"""``otpgate aws provision | template``: the AWS runtime's resources, locally and on AWS.

Kept apart from ``otpgate.cli``, which only adds this group; the AWS SDK is imported
when a command runs, so ``otpgate --help`` works without the ``aws`` extra.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import click

from otpgate import config
from otpgate.errors import OtpgateError


@click.group()
def aws() -> None:
    """The AWS runtime: provision its resources on a local endpoint, or write the SAM
    template that deploys them on AWS."""


@aws.command()
@click.option("--endpoint-url", required=True,
              help="Where the AWS APIs answer (moto, LocalStack): http://127.0.0.1:5000")
@click.option("--region", default=lambda: os.environ.get("AWS_REGION", "us-east-1"),
              show_default="$AWS_REGION or us-east-1")
@click.option("--name", default="otpgate", show_default=True,
              help="The table, and the prefix of the topics and queues.")
@click.option("--drivers", default=None,
              help="Driver names with a queue (default: the configured drivers).")
def provision(endpoint_url: str, region: str, name: str, drivers: str | None) -> None:
    """Create the table, both topics, and a queue + dead-letter queue with its filtered
    subscription per driver, unless they exist; print the settings as KEY=value lines."""
    from otpgate.aws.clients import Clients
    from otpgate.aws.provision import provision as make
    from otpgate.runtime import name_drivers

    try:
        settings = config.from_env()
        names = [n.strip() for n in drivers.split(",") if n.strip()] if drivers else \
            list(name_drivers(settings.driver_urls)[0])
    except OtpgateError as exc:
        raise click.ClickException(exc.detail) from None

    async def run() -> dict[str, str]:
        clients = Clients(region, endpoint_url)
        try:
            return await make(clients, name, names,
                              max_deliveries=settings.bus.max_deliveries)
        finally:
            await clients.close()

    try:
        found = asyncio.run(run())
    except Exception as exc:  # the SDK's errors, said plainly
        raise click.ClickException(f"provisioning failed: {exc}") from None
    for key, value in found.items():
        click.echo(f"{key}={value}")


@aws.command()
@click.option("--drivers", required=True,
              help="NAME[=RESERVED_CONCURRENCY],… — one dispatch function each (default 2).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the template here (default: standard output).")
def template(drivers: str, output: Path | None) -> None:
    """Write the AWS SAM template with a dispatch function per driver."""
    from otpgate.aws.template import parse_drivers, render

    try:
        text = render(parse_drivers(drivers))
    except OtpgateError as exc:
        raise click.ClickException(exc.detail) from None
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
