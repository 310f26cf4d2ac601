"""The ``secretum`` command: init, migrate, serve, keys, audit, pki, imaging.

Every command reads its configuration from :class:`secretum.config.Settings` (``SECRETUM_*``
environment variables or the TOML file) and opens the platform through
:mod:`secretum.bootstrap`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from secretum import __version__
from secretum.audit.cli import audit_app
from secretum.bootstrap import (
    MigrationReport,
    Platform,
    PlatformError,
    dev_passphrase_path,
    init_platform,
    is_initialised,
    migrate_platform,
    open_platform,
    resolve_passphrase,
    write_dev_passphrase,
)
from secretum.config import Settings
from secretum.imaging_cli import dicom, imaging_app
from secretum.report_cli import report_app

console = Console()
err = Console(stderr=True)


class _Secretum(typer.Typer):
    """The ``secretum`` command: a PlatformError (wrong passphrase or PIN, not initialised...)
    that a command lets through ends as one ``error:`` line and exit code 1, never a
    traceback, whichever command group raised it (``audit`` opens the platform itself)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except PlatformError as exc:
            _error_line(str(exc))
            raise SystemExit(1) from None


app = _Secretum(
    name="secretum",
    help="Secretum: telemedicine that keeps the secret médical.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals can hold keys and patient data
)
keys_app = typer.Typer(
    help="Key hierarchy: KEK rotation, retirement, crypto-shredding.", no_args_is_help=True
)
pki_app = typer.Typer(
    help="Internal CA: certificates for devices and services.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(pki_app, name="pki")
app.add_typer(report_app, name="report")
app.add_typer(imaging_app, name="imaging")
app.command("dicom")(dicom)


def _error_line(message: str) -> None:
    """One line on stderr, never wrapped (soft_wrap), the message printed as it is."""
    err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True, highlight=False)


def _fail(message: str) -> typer.Exit:
    _error_line(message)
    return typer.Exit(code=1)


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


@app.command()
def init() -> None:
    """Create the data directory: keystore, databases, platform keys, internal CA.

    The keystore passphrase comes from SECRETUM_KEYSTORE_PASSPHRASE, or is asked for.
    """
    settings = Settings()
    passphrase = resolve_passphrase(settings)
    if passphrase is None and settings.kms == "local":
        passphrase = typer.prompt("Keystore passphrase", hide_input=True, confirmation_prompt=True)
    try:
        platform = init_platform(settings, passphrase)
    except PlatformError as exc:
        raise _fail(str(exc)) from None
    platform.close()
    console.print(f"[green]initialised[/green] {settings.data_dir}")


@app.command()
def serve(
    dev: Annotated[
        bool,
        typer.Option(
            help="Development: initialise on first start with a generated passphrase kept in "
            "<data_dir>/dev-passphrase (0600). Never in production."
        ),
    ] = False,
    demo: Annotated[
        bool,
        typer.Option(help="Seed the fictitious demo clinic first (once; with --dev)."),
    ] = False,
) -> None:
    """Serve the platform over HTTPS, TLS 1.3 only. Until an administrator exists, prints the
    one-time link that creates the first one."""
    from secretum.web.app import create_app
    from secretum.web.server import serve as serve_https

    settings = Settings()
    try:
        if dev and not is_initialised(settings):
            passphrase = resolve_passphrase(settings, dev=True) or write_dev_passphrase(settings)
            init_platform(settings, passphrase).close()
            err.print(
                f"[yellow]development passphrase kept in {dev_passphrase_path(settings)}"
                " — never do this in production[/yellow]"
            )
        # Development convenience: a dev data directory follows the code's schema by itself
        # (said on the console). Without --dev, an old schema is refused: `secretum migrate`.
        platform = open_platform(settings, dev=dev, migrate=dev)
    except PlatformError as exc:
        raise _fail(str(exc)) from None
    if platform.migration is not None and platform.migration.changed:
        err.print("[yellow]development: the schema was migrated automatically[/yellow]")
        _print_migration(platform.migration)
    if demo:
        if not dev:
            raise _fail("--demo goes with --dev: a demo clinic has no place on a real platform")
        _seed_demo(platform)
    identity = platform.server_identity()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    # The address to open is the public URL, not the listening address: passkeys (WebAuthn)
    # are bound to that name, and a browser at https://127.0.0.1 is refused ("invalid domain").
    console.print(
        f"Secretum {__version__}: open [bold]{settings.base_url}/[/bold]"
        f" (listening on {host}:{settings.port}, TLS 1.3 only; passkeys work at this address)\n"
        f"Certificates come from the internal CA {identity.cafile}: trust it once in your"
        " browser (README, 'Trusting the development CA')",
        soft_wrap=True,
    )
    from secretum.web.routes.auth import setup_link

    link = setup_link(platform)
    if link is not None:
        console.print(
            "No administrator yet. Create the first one with this one-time link "
            f"(valid 24 hours; a new one is printed at each start):\n[bold]{link}[/bold]",
            soft_wrap=True,
        )
    dicom_server = None
    if settings.dicom_enabled:
        from secretum.imaging_cli import start_dicom

        try:
            dicom_server = start_dicom(platform, settings)
        except (ValueError, OSError) as exc:
            platform.close()
            raise _fail(f"DICOM: {exc}") from None
    try:
        serve_https(
            create_app(settings, services=platform, duties=platform.duties()),
            host=settings.host,
            port=settings.port,
            certfile=identity.certfile,
            keyfile=identity.keyfile,
            cafile=identity.cafile,
            log_level=settings.log_level.lower(),
        )
    finally:
        if dicom_server is not None:
            dicom_server.stop()
        platform.close()  # the audit witness flushed, then the engines let go


@app.command()
def migrate() -> None:
    """Upgrade the main database and the key vault to this version's schema.

    Run it once per upgrade, before starting the new version (`serve` refuses an old schema).
    Several instances may run it at once: a lock makes the others wait, then find nothing to
    do. Crossing the row-integrity migration also tags, once, the rows written before it: run
    it on a database you trust (e.g. straight after a verified backup), since whatever the
    database holds then is vouched for by the platform's key.
    """
    try:
        report = migrate_platform(Settings())
    except PlatformError as exc:
        raise _fail(str(exc)) from None
    _print_migration(report)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _print_migration(report: MigrationReport) -> None:
    from secretum.storage.schema import database_label, show_revisions

    for done in (report.main, report.vault):
        label = database_label(done.database)
        if not done.applied:
            console.print(f"{label}: up to date at {show_revisions(done.after)}", soft_wrap=True)
            continue
        console.print(
            f"[green]{label}[/green]: {show_revisions(done.before)} → "
            f"{show_revisions(done.after)} ({_count(len(done.applied), 'migration')} applied)",
            soft_wrap=True,
        )
    if report.tagged is not None:
        total = sum(report.tagged.values())
        detail = ", ".join(f"{table} {n}" for table, n in sorted(report.tagged.items()) if n)
        console.print(
            f"row integrity: tagged {_count(total, 'row')} written before it"
            + (f" ({detail})" if detail else "")
            + ": they are trusted as the database held them (a database you trust)",
            soft_wrap=True,
        )


@app.command()
def demo() -> None:
    """Seed a small fictitious clinic (admin, DPO, practitioners, patients) to try every page."""
    _seed_demo(_open())


def _seed_demo(platform: Platform) -> None:
    from secretum.demo import DemoAlreadySeeded, seed_demo

    try:
        seed_demo(platform, platform.clock(), echo=console.print)
    except DemoAlreadySeeded:
        console.print("the demo clinic is already there (accounts printed at first seeding)")
    _witnessed(platform)


# -- keys -------------------------------------------------------------------------------------


@keys_app.command("status")
def keys_status() -> None:
    """KEK versions and how many wrapped keys depend on each."""
    from secretum.keys.tables import data_keys, named_secrets

    platform = _open()
    from sqlalchemy import func, select

    table = Table("KEK version", "patient data keys", "named secrets", "state")
    with platform.vault_engine.connect() as conn:
        counts: dict[str, dict[int, int]] = {
            t.name: dict(
                conn.execute(select(t.c.kek_version, func.count()).group_by(t.c.kek_version)).all()
            )
            for t in (data_keys, named_secrets)
        }
    current = platform.kms.current_version()
    for v in platform.kms.versions():
        state = "current" if v == current else "old"
        table.add_row(
            str(v),
            str(counts["data_keys"].get(v, 0)),
            str(counts["named_secrets"].get(v, 0)),
            state,
        )
    console.print(table)
    console.print(
        f"KMS: {platform.kms.name}; minimum decryption version: "
        f"{platform.kms.min_decrypt_version()}"
    )


@keys_app.command("rotate")
def keys_rotate(
    batch_size: Annotated[int, typer.Option(min=1, max=10_000)] = 500,
) -> None:
    """New KEK version, then rewrap every key in batches (resumes an interrupted rotation)."""
    from secretum.keys.service import audited_rotate

    platform = _open()
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("rewrapping", total=None)
        report = audited_rotate(
            platform,
            batch_size=batch_size,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    _witnessed(platform)
    verb = "resumed rotation to" if report.resumed else "rotated to"
    console.print(
        f"[green]{verb} KEK v{report.to_version}[/green]: {report.rewrapped} keys rewrapped"
    )


@keys_app.command("retire")
def keys_retire(
    below: Annotated[int, typer.Option(help="destroy KEK versions below this one")],
) -> None:
    """Destroy old KEK versions once nothing depends on them."""
    from secretum.keys.rotation import RetireRefused
    from secretum.keys.service import audited_retire

    platform = _open()
    try:
        audited_retire(platform, below)
    except (RetireRefused, ValueError) as exc:
        raise _fail(str(exc)) from None
    _witnessed(platform)
    console.print(f"[green]KEK versions below {below} destroyed[/green]")


@keys_app.command("shred")
def keys_shred(
    patient_id: str,
    yes: Annotated[bool, typer.Option("--yes", help="confirm: this cannot be undone")] = False,
) -> None:
    """Crypto-shred a patient: destroy their data key, so none of their data opens again.

    Only a patient's id is accepted: a staff account's id, or an unknown one, is refused.
    """
    from secretum.crypto.errors import KeyNotFoundError
    from secretum.keys.service import NotAPatient, audited_shred

    if not yes:
        raise _fail("shredding is permanent: add --yes to confirm")
    platform = _open()
    try:
        audited_shred(platform, patient_id, actor_id="cli", actor_role="admin")
    except (KeyNotFoundError, NotAPatient) as exc:
        raise _fail(str(exc)) from None
    _witnessed(platform)
    console.print(f"[green]shredded[/green] the data key of {patient_id}")


@keys_app.command("passphrase")
def keys_passphrase() -> None:
    """Change the keystore passphrase (local KMS): a new file key then seals every KEK.

    The current passphrase comes as for every command (SECRETUM_KEYSTORE_PASSPHRASE, or the
    development file, which is then updated); the new one is asked for, twice, and must be
    strong. Restart running servers with the new one: they cannot follow the change.
    """
    from secretum.bootstrap import check_keystore_passphrase
    from secretum.crypto.kms.local import LocalKeystoreKMS, atomic_write

    settings = Settings()
    platform = _open()
    try:
        kms = platform.kms
        if not isinstance(kms, LocalKeystoreKMS):
            raise _fail("only the local keystore has a passphrase (an HSM has its PIN)")
        new = typer.prompt("New keystore passphrase", hide_input=True, confirmation_prompt=True)
        try:
            check_keystore_passphrase(new)
        except PlatformError as exc:
            raise _fail(str(exc)) from None
        kms.change_passphrase(new)
        dev_file = dev_passphrase_path(settings)
        if settings.keystore_passphrase is None and dev_file.exists():
            atomic_write(dev_file, new.encode() + b"\n")
    finally:
        platform.close()
    console.print(
        "[green]keystore passphrase changed[/green]: restart running servers with the new one"
    )


# -- pki --------------------------------------------------------------------------------------


@pki_app.command("issue-client")
def pki_issue_client(
    subject_id: Annotated[str, typer.Argument(help="device or service id, e.g. ecg-0042")],
    out: Annotated[Path, typer.Option(help="folder for <id>.pem and <id>.key")] = Path("."),
) -> None:
    """Issue a client certificate (mutual TLS) for a device or a service."""
    from secretum.pki import (
        generate_leaf_key,
        issue_client_certificate,
        write_certificates_pem,
        write_private_key_pem,
    )

    platform = _open()
    ca = platform.certificate_authority()
    key = generate_leaf_key()
    cert = issue_client_certificate(ca, subject_id, key.public_key(), now=platform.clock())
    out.mkdir(parents=True, exist_ok=True)
    write_private_key_pem(out / f"{subject_id}.key", key)
    write_certificates_pem(out / f"{subject_id}.pem", [cert])
    console.print(f"[green]issued[/green] {out / (subject_id + '.pem')} (key 0600 beside it)")


def _open() -> Platform:
    try:
        return open_platform(Settings(), dev=True)
    except PlatformError as exc:
        raise _fail(str(exc)) from None


def _witnessed(platform: Platform) -> None:
    """The audit barrier before a command reports success: every audit entry it committed is
    covered by a signed tree head on disk in the witness file (``secretum.audit.witnessing``).
    If the witness cannot be written, the command fails: its action committed, but it must not
    say "done" while the audit entry is covered by nothing outside the database."""
    from secretum.audit.checkpoint import WitnessError

    try:
        platform.audit.wait_witnessed()
    except WitnessError as exc:
        raise _fail(f"the action was done but its audit entry is not witnessed: {exc}") from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
