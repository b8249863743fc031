"""``otpgate serve | worker | send | verify | unlock | routes | keys | secrets | services |
bench | aws``.

Settings come from ``OTPGATE_*`` variables (and ``OTPGATE_CONFIG``); flags override them.
Every command that opens the store first checks the secret key against the one the store
was made with, and refuses to run with another.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from otpgate import apikeys, codekeys, config, devmode, redact, services, urls
from otpgate.clock import isoformat
from otpgate.config import Settings
from otpgate.core import tenants
from otpgate.errors import OtpgateError, RateLimited
from otpgate.observe import logs
from otpgate.runtime import Runtime, check_drivers
from otpgate.service import OtpRequest

T = TypeVar("T")


def _settings(**overrides: Any) -> Settings:
    try:
        return config.from_env(**overrides)
    except OtpgateError as exc:
        raise click.ClickException(exc.detail) from None


def _with_runtime(settings: Settings, work: Callable[[Runtime], Awaitable[T]]) -> T:
    async def run() -> T:
        runtime = await Runtime.open(settings)
        try:
            return await work(runtime)
        finally:
            await runtime.close()

    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(run())
    except RateLimited as exc:
        raise click.ClickException(f"{exc.detail} (retry after {exc.retry_after} s)") from None
    except OtpgateError as exc:
        raise click.ClickException(exc.detail) from None


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop where it is installed (it comes with uvicorn[standard]), as
    ``otpgate serve`` runs on it: a worker sends on it too."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _preflight(settings: Settings, drivers: bool = True) -> None:
    """Refuse to start a server or worker with a bad driver URL or another secret key,
    with the reason, before anything listens or sends."""
    async def check() -> None:
        if drivers:
            await check_drivers(settings)
        _check_compat(settings)
        await (await Runtime.open(settings)).close()

    try:
        asyncio.run(check())
    except OtpgateError as exc:
        raise click.ClickException(exc.detail) from None


def _check_compat(settings: Settings) -> None:
    """The Twilio Verify services and the Supabase hook secret, as the API will read them."""
    from otpgate.compat import supabase

    services.Registry.of(settings)
    if settings.supabase_hook_secret:
        supabase.parse_secrets(settings.supabase_hook_secret)


def _tenant(_: click.Context, __: click.Parameter, value: str) -> str:
    try:
        return tenants.parse(value)
    except OtpgateError as exc:
        raise click.BadParameter(exc.detail) from None


_TENANT = click.option("--tenant", default=tenants.DEFAULT, show_default=True,
                       callback=_tenant, help="The tenant to act for.")


def _echo_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", envvar="OTPGATE_LOG_LEVEL", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--log-format", envvar="OTPGATE_LOG_FORMAT", default="text", show_default=True,
              type=click.Choice(list(logs.FORMATS)), help="json: one object per line.")
def main(log_level: str, log_format: str) -> None:
    """otpgate: one-time passcodes over SMS, e-mail and more, sent through an event bus.

    Every setting is also read from an OTPGATE_* environment variable; see the README.
    """
    logs.configure(log_format, log_level)
    redact.install()


@main.command()
@click.option("--host", envvar="OTPGATE_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="OTPGATE_PORT", default=8080, show_default=True, type=int)
@click.option("--data-dir", envvar="OTPGATE_DATA_DIR", default="var", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Where the embedded database and the secret key live.")
@click.option("--dev/--no-dev", envvar="OTPGATE_DEV", default=False, show_default=True,
              help="Dev mode: no API key needed, messages only captured for the dev inbox "
                   "(the capture driver only; loopback only).")
@click.option("--dev-public", envvar="OTPGATE_DEV_PUBLIC", is_flag=True, default=False,
              help="Let dev mode listen on an address other than loopback (it warns).")
@click.option("--workers", envvar="OTPGATE_WORKERS", default=1, show_default=True,
              type=click.IntRange(1, 64), help="Server processes sharing the port.")
@click.option("--api-only", envvar="OTPGATE_API_ONLY", is_flag=True, default=False,
              help="Serve the API without dispatchers; run otpgate worker to send.")
def serve(host: str, port: int, data_dir: Path, dev: bool, dev_public: bool, workers: int,
          api_only: bool) -> None:
    """Run the HTTP API together with the dispatchers (or, with --api-only, without)."""
    settings = _settings(host=host, port=port, data_dir=data_dir, dev=dev, workers=workers,
                         api_only=api_only, dev_public=dev_public or None)
    try:
        warnings = devmode.check(settings)
    except OtpgateError as exc:
        raise click.ClickException(exc.detail) from None
    _preflight(settings)
    url = f"http://{host}:{port}"
    role = "API only" if api_only else "API and dispatchers"
    if settings.server.log_format == "json":  # every line one object: the app logs it all
        _run_server(settings)
        return
    click.echo(f"otpgate listening on {url} ({role}, {workers} worker(s), "
               f"store {urls.mask(settings.store_url)})")
    if settings.dev:
        click.secho(
            f"DEV MODE: no API key is required, and messages are captured, not sent: only "
            f"the capture driver runs (see {url}/dev/inbox); real drivers need --no-dev and "
            "an API key", fg="yellow", bold=True)
    for warning in warnings:
        click.secho(warning, fg="red", bold=True)
    _run_server(settings)


def _run_server(settings: Settings) -> None:
    """uvicorn over the app for ``settings``: each server process gets them as an
    argument (encoded), never through the environment; its HTTP protocol bounds request
    heads and the time to send a request (``otpgate.api.http11``). SIGTERM stops it
    gracefully (``otpgate.api.serving``)."""
    from uvicorn.supervisors import Multiprocess

    from otpgate.api import serving
    from otpgate.api.app import from_encoded
    from otpgate.api.http11 import HttpLimits, ServerConfig

    server = settings.server
    app = functools.partial(from_encoded, settings.encode())
    limits = HttpLimits(max_head_bytes=server.max_header_bytes,
                        max_headers=server.max_headers,
                        request_timeout=server.request_timeout)
    uv = ServerConfig(app, limits=limits, factory=True, host=server.host, port=server.port,
                      workers=server.workers, log_level=server.log_level,
                      log_config=logs.uvicorn_config(server.log_format, server.log_level),
                      access_log=False, lifespan="on", server_header=False,
                      date_header=False,
                      # forwarded headers are read by otpgate itself, from trusted proxies only
                      proxy_headers=False,
                      timeout_graceful_shutdown=math.ceil(server.shutdown_grace))
    if server.workers > 1:
        with _metrics_dir():
            Multiprocess(uv, sockets=[uv.bind_socket()]).run()
        return
    status = serving.run(uv)
    if status:
        sys.exit(status)  # uvicorn's start-up failure


@contextlib.contextmanager
def _metrics_dir() -> Iterator[None]:
    """Server processes write their metrics to one directory that ``/metrics`` sums up
    (prometheus-client's multi-process mode): a fresh one, removed at exit — or the
    ``PROMETHEUS_MULTIPROC_DIR`` given, emptied of earlier runs' samples first."""
    from otpgate.observe.metrics import MULTIPROC_DIR

    given = os.environ.get(MULTIPROC_DIR)
    if given:
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        yield
        return
    made = tempfile.mkdtemp(prefix="otpgate-metrics-")
    os.environ[MULTIPROC_DIR] = made
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_DIR, None)
        shutil.rmtree(made, ignore_errors=True)


@main.command()
@click.option("--dev/--no-dev", envvar="OTPGATE_DEV", default=False, show_default=True,
              help="Dev mode, as serve --dev: messages captured for the dev inbox.")
@click.option("--metrics-port", envvar="OTPGATE_METRICS_PORT", type=click.IntRange(1, 65535),
              default=None, help="Serve this process's Prometheus metrics on this port.")
@click.option("--metrics-host", envvar="OTPGATE_METRICS_HOST", default="127.0.0.1",
              show_default=True, help="The address the metrics port listens on (no key is "
                                      "asked for there).")
def worker(dev: bool, metrics_port: int | None, metrics_host: str) -> None:
    """Run the dispatchers and the expiry sweeper without the HTTP API.

    SIGTERM (or Ctrl-C) stops taking deliveries, lets those in flight finish or hands
    them back, and exits 0.
    """
    settings = _settings(dev=dev)
    _preflight(settings)

    async def run(runtime: Runtime) -> None:
        await runtime.start_workers()
        if metrics_port is not None:
            from otpgate.observe import figures

            figures.serve(metrics_host, metrics_port)
            refresher = asyncio.create_task(figures.keep_fresh(runtime))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        click.echo(f"otpgate worker running on {urls.mask(settings.store_url)}; "
                   "Ctrl-C stops it")
        await stop.wait()
        if metrics_port is not None:
            refresher.cancel()

    _with_runtime(settings, run)


@main.command()
@click.option("--to", required=True, help="E.164 number or e-mail address.")
@click.option("--channel", help="sms, email, ... (default: by recipient).")
@click.option("--purpose", default=None, help="e.g. login (default: default).")
@click.option("--locale", default=None)
@click.option("--country", default=None, help="Country hint for national numbers (US, GB).")
@_TENANT
def send(to: str, channel: str | None, purpose: str | None, locale: str | None,
         country: str | None, tenant: str) -> None:
    """Request a code for a recipient; a running serve or worker sends it."""
    async def run(runtime: Runtime) -> dict[str, object]:
        result = await runtime.service.request(OtpRequest(
            to=to, channel=channel, purpose=purpose, locale=locale, country=country),
            tenant=tenant)
        otp = result.otp
        return {"id": otp.id, "status": otp.status.value, "to": otp.to_masked,
                "channels": otp.channels, "outcome": result.outcome.value,
                "expires_at": isoformat(otp.expires_at), "send_count": otp.send_count,
                "attempts_left": result.attempts_left}

    _echo_json(_with_runtime(_settings(), run))


@main.command()
@click.option("--id", "otp_id", help="The OTP id returned by send.")
@click.option("--to", help="Verify by recipient instead of id.")
@click.option("--purpose", default=None)
@click.option("--code", required=True)
@_TENANT
def verify(otp_id: str | None, to: str | None, purpose: str | None, code: str,
           tenant: str) -> None:
    """Check a code, by OTP id or by recipient and purpose."""
    if (otp_id is None) == (to is None):
        raise click.UsageError("give exactly one of --id and --to")

    async def run(runtime: Runtime) -> dict[str, object]:
        if otp_id is not None:
            answer = await runtime.service.verify(otp_id, code, tenant=tenant)
        else:
            answer = await runtime.service.verify_recipient(str(to), purpose, code,
                                                            tenant=tenant)
        body: dict[str, object] = {"valid": answer.valid, "status": answer.status.value}
        if answer.id is not None:
            body = {"id": answer.id, **body}
        if answer.attempts_left is not None:
            body["attempts_left"] = answer.attempts_left
        return body

    result = _with_runtime(_settings(), run)
    _echo_json(result)
    if not result["valid"]:
        sys.exit(1)


@main.command()
@click.option("--to", "to", default=None, help="Show the chain this recipient would get.")
@click.option("--country", default=None, help="Country hint for a national number.")
def routes(to: str | None, country: str | None) -> None:
    """Print the effective routing table, or the driver chain per channel for --to."""
    from otpgate.core import recipients
    from otpgate.runtime import route_table

    settings = _settings()
    try:
        table = asyncio.run(check_drivers(settings)) if settings.drivers else \
            route_table(settings)
        if to is None:
            for route in table.table():
                cost = "  (least cost)" if route.strategy == "cost" else ""
                click.echo(f"{route.channel:<9} {route.destination:<10} "
                           f"{' -> '.join(route.drivers)}{cost}")
            return
        rcpt = recipients.parse(to, country)
        for channel in sorted(table.channels()):
            try:
                chain = table.route(rcpt, channel)
            except OtpgateError:
                continue
            click.echo(f"{channel:<9} {' -> '.join(chain)}")
    except OtpgateError as exc:
        raise click.ClickException(exc.detail) from None


@main.command()
@click.option("--to", required=True, help="The locked recipient (E.164 or e-mail).")
@click.option("--country", default=None, help="Country hint for national numbers (US, GB).")
@_TENANT
def unlock(to: str, country: str | None, tenant: str) -> None:
    """End a recipient's lock and forget its consecutive wrong answers."""
    async def run(runtime: Runtime) -> dict[str, object]:
        masked, done = await runtime.service.unlock(to, country, tenant=tenant,
                                                    by="the command line")
        return {"to": masked, "tenant": tenant, "was_locked": done.was_locked,
                "failures": done.failures}

    _echo_json(_with_runtime(_settings(), run))


@main.group()
def keys() -> None:
    """Manage API keys (stored hashed; the key is shown once, at creation)."""


@keys.command("create")
@click.option("--name", required=True, help="Who or what uses the key.")
@click.option("--tenant", default=tenants.DEFAULT, show_default=True, callback=_tenant,
              help="The tenant the key acts for: it sees only that tenant's OTPs.")
@click.option("--admin", is_flag=True, default=False,
              help="May also use the admin routes (POST /v1/admin/unlock) of its tenant, "
                   "/metrics and the dashboard.")
@click.option("--client", is_flag=True, default=False,
              help="A client key, safe to ship in a mobile or browser app: it may only "
                   "request and verify codes.")
@click.option("--origin", "origins", multiple=True, metavar="https://HOST[:PORT]",
              help="(client keys) Accept the key only from browser pages of this origin, "
                   "with CORS; repeat for more.")
@click.option("--scope", "scopes", multiple=True,
              type=click.Choice(list(apikeys.SCOPES)),
              help="Narrow the key to these scopes (repeat); default: a server key's "
                   "otp:send, otp:verify, otp:read, otp:cancel (+ admin with --admin), a "
                   "client key's otp:send, otp:verify.")
def keys_create(name: str, tenant: str, admin: bool, client: bool, origins: tuple[str, ...],
                scopes: tuple[str, ...]) -> None:
    async def run(runtime: Runtime) -> str:
        _, plaintext = await apikeys.create(
            runtime.backend.store, name, runtime.clock.now(), tenant=tenant, admin=admin,
            kind=apikeys.CLIENT if client else apikeys.SERVER, scopes=scopes or None,
            origins=origins)
        return plaintext

    click.echo(_with_runtime(_settings(), run))


@keys.command("list")
def keys_list() -> None:
    async def run(runtime: Runtime) -> list[dict[str, object]]:
        now = runtime.clock.now()
        return [{"id": k.id, "name": k.name, "tenant": k.tenant, "kind": k.kind,
                 "admin": apikeys.ADMIN in apikeys.scopes_of(k),
                 "scopes": sorted(apikeys.scopes_of(k)), "origins": k.origins,
                 "created_at": isoformat(k.created_at),
                 "revoked_at": isoformat(k.revoked_at) if k.revoked_at else None,
                 "previous_secret_until": isoformat(k.old_until)
                 if apikeys.rotating(k, now) and k.old_until is not None else None}
                for k in await apikeys.list_keys(runtime.backend.store)]

    _echo_json(_with_runtime(_settings(), run))


def _duration(_: click.Context, __: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = value.strip().lower()
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    if not number.isascii() or not number.isdigit():
        raise click.BadParameter("a duration like 3600, 90m, 24h or 7d")
    return float(int(number) * units[unit])


@keys.command("rotate")
@click.argument("key_id")
@click.option("--expire", callback=_duration, default=None, metavar="DURATION",
              help="How long the previous secret keeps working (3600, 90m, 24h, 7d; "
                   "default 24h; 0 ends it at once).")
@click.option("--finish", is_flag=True, default=False,
              help="End a rotation: the previous secret stops working now.")
def keys_rotate(key_id: str, expire: float | None, finish: bool) -> None:
    """Give a key a new secret (printed once); the previous one keeps working until the
    grace period ends or the rotation is finished."""
    if finish and expire is not None:
        raise click.UsageError("--finish and --expire do not go together")

    async def run(runtime: Runtime) -> str:
        store, now = runtime.backend.store, runtime.clock.now()
        if finish:
            done = await apikeys.finish_rotation(store, key_id, now)
            return (f"finished: only the new secret of {key_id} works" if done else
                    f"{key_id} was not being rotated")
        grace = apikeys.ROTATION_GRACE if expire is None else expire
        _, plaintext = await apikeys.rotate(store, key_id, now, grace=grace)
        return plaintext

    click.echo(_with_runtime(_settings(), run))


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    async def run(runtime: Runtime) -> bool:
        return await apikeys.revoke(runtime.backend.store, key_id, runtime.clock.now())

    if not _with_runtime(_settings(), run):
        raise click.ClickException(f"no active key {key_id}")
    click.echo(f"revoked {key_id}")


@main.group()
def secrets() -> None:
    """Rotate the keys codes are digested and sealed with, and tokens signed with."""


@secrets.command("rotate")
def secrets_rotate() -> None:
    """Make a new current code key; the old ones keep checking what they made."""
    async def run(runtime: Runtime) -> str:
        return await codekeys.rotate(runtime.backend.store, runtime.keyring,
                                     runtime.clock.now())

    kid = _with_runtime(_settings(), run)
    click.echo(f"code key {kid} is current; running processes adopt it within "
               f"{codekeys.REFRESH:.0f} s")


@secrets.command("list")
def secrets_list() -> None:
    """Every code key, oldest first."""
    settings = _settings()

    async def run(runtime: Runtime) -> list[dict[str, object]]:
        return await codekeys.listing(runtime.backend.store, runtime.keyring,
                                      settings.policy.max_ttl)

    _echo_json(_with_runtime(settings, run))


@secrets.command("retire")
@click.argument("kid")
def secrets_retire(kid: str) -> None:
    """Stop accepting what the code key KID made, once nothing alive can need it."""
    settings = _settings()

    async def run(runtime: Runtime) -> None:
        await codekeys.retire(runtime.backend.store, runtime.keyring, kid,
                              runtime.clock.now(), settings.policy.max_ttl)

    _with_runtime(settings, run)
    click.echo(f"code key {kid} is retired")


@main.group()
def webhooks() -> None:
    """Outgoing webhooks that could not be delivered (OTPGATE_WEBHOOK_URL)."""


@webhooks.command("dead")
def webhooks_dead() -> None:
    """List the dead-lettered webhooks, oldest first."""
    from otpgate.webhooks import SUBSCRIPTION

    async def run(runtime: Runtime) -> list[dict[str, object]]:
        return [{"id": d.event.id, "type": d.event.type, "subject": d.event.subject,
                 "time": d.event.time, "deliveries": d.deliveries, "error": d.error,
                 "failed_at": isoformat(d.failed_at)}
                for d in await runtime.backend.bus.dead_letters(SUBSCRIPTION.name)]

    _echo_json(_with_runtime(_settings(), run))


@webhooks.command("replay")
@click.argument("event_ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Replay every dead-lettered webhook.")
def webhooks_replay(event_ids: tuple[str, ...], every: bool) -> None:
    """Queue dead-lettered webhooks again (by event id, or --all); a running serve or
    worker delivers them, with a fresh day of retries."""
    from otpgate.webhooks import SUBSCRIPTION

    if bool(event_ids) == every:
        raise click.UsageError("give event ids or --all")

    async def run(runtime: Runtime) -> dict[bool, list[str]]:
        bus = runtime.backend.bus
        wanted = list(event_ids) or [d.event.id
                                     for d in await bus.dead_letters(SUBSCRIPTION.name)]
        done: dict[bool, list[str]] = {True: [], False: []}
        for event_id in wanted:
            done[await bus.replay(SUBSCRIPTION.name, event_id)].append(event_id)
        return done

    done = _with_runtime(_settings(), run)
    click.echo(f"replayed {len(done[True])} webhook(s)")
    if done[False]:
        raise click.ClickException(f"no dead-lettered webhook {', '.join(done[False])}")


@main.group("services")
def services_group() -> None:
    """Twilio Verify services: the ServiceSids (VA…) apps on Twilio's SDK call /v2 with.

    A sid configured nowhere works too, with the defaults and the sid as its purpose."""


@services_group.command("create")
@click.option("--name", default=None, help="A friendly name (Twilio's friendly_name).")
@click.option("--purpose", default=None,
              help="The purpose its codes are kept under (default: the sid, lowercased).")
@click.option("--brand", default=None, help="The name its messages give (default: "
              "OTPGATE_BRAND).")
@click.option("--code-length", type=int, default=None, help="Digits of its codes.")
@click.option("--ttl", type=int, default=None, help="Seconds its codes live.")
@click.option("--custom-code", is_flag=True, default=False,
              help="Let a verification bring its own code (CustomCode).")
def services_create(name: str | None, purpose: str | None, brand: str | None,
                    code_length: int | None, ttl: int | None, custom_code: bool) -> None:
    """Make a ServiceSid, kept in the data dir (services.json), and print it."""
    settings = _settings()
    try:
        made = services.create(services.file_of(settings), config.ServiceSettings(
            name=name, purpose=purpose, brand=brand, code_length=code_length, ttl=ttl,
            custom_code=custom_code), settings.policy)
    except OtpgateError as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(made.sid)


@services_group.command("list")
def services_list() -> None:
    """Every configured service: the TOML file's and those made with services create."""
    settings = _settings()
    try:
        found = services.Registry.of(settings).all()
    except OtpgateError as exc:
        raise click.ClickException(exc.detail) from None
    _echo_json([{"sid": s.sid, "name": s.name, "purpose": s.purpose, "brand": s.brand,
                 "code_length": s.code_length, "ttl": s.ttl, "custom_code": s.custom_code}
                for s in found])


def _add_aws() -> None:
    from otpgate.aws.cli import aws

    main.add_command(aws)


_add_aws()


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> None:
    """Benchmark a local server (from a source checkout): see benchmarks/README.md."""
    runner = Path("benchmarks") / "run.py"
    if not runner.exists():
        raise click.ClickException("run otpgate bench from the root of a source checkout")
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(subprocess.call([sys.executable, "-m", "benchmarks.run", *args]))  # noqa: S603
