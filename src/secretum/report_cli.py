"""``secretum report``: check a signed radiology report later.

``secretum report verify REPORT_ID [--version N] [--json]`` opens the platform, reads the
report's version (default: the current one) through the reports' use case (one decision of its
own, one audit entry naming the report and its patient, actor ``cli``), recomputes the SHA-256
of its canonical form (RFC 8785, without meta and signature) and checks the stored WebAuthn
assertion: the challenge is that hash, the client data's type and origin, the RP id hash in
the authenticator data, the signer's registered credential, the signature with its public key
and user verification, the version signed. Exit code 0 only if every check passes; the report's
content is never printed.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from secretum.access.context import RequestContext
from secretum.access.model import Actor, Purpose, Role
from secretum.config import Settings

report_app = typer.Typer(help="Radiology reports: verify a signature.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

#: The operator running the command, as the audit names them.
CLI_ACTOR = Actor("cli", Role.DPO)

_LABELS = {
    "content_matches": "report content matches the signed hash (RFC 8785, SHA-256)",
    "challenge_matches": "WebAuthn challenge is that hash (type webauthn.get)",
    "origin_ok": "origin is one of the platform's",
    "rp_ok": "relying party id hash matches",
    "credential_known": "credential registered to the signer",
    "signature_valid": "assertion signature verifies (user verified)",
    "version_matches": "signed version is this version",
}


@report_app.command("verify")
def verify(
    report_id: str,
    version: Annotated[int | None, typer.Option(help="a version of the report")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the verdict as JSON")] = False,
) -> None:
    """Check the signature of a radiology report (exit code 0 if valid)."""
    from secretum.access.errors import Refused
    from secretum.bootstrap import PlatformError, open_platform
    from secretum.crypto.errors import IntegrityError

    try:
        platform = open_platform(Settings(), dev=True)
    except PlatformError as exc:
        err.print(f"[red]error:[/red] {exc}", soft_wrap=True, highlight=False)
        raise typer.Exit(1) from None
    try:
        ctx = RequestContext(CLI_ACTOR, Purpose.OPERATIONS, platform.clock())
        try:
            verdict = platform.services.reports.verify_for_operator(ctx, report_id, version)
        except (Refused, IntegrityError) as exc:
            message = (
                "the stored report is damaged" if isinstance(exc, IntegrityError) else str(exc)
            )
            err.print(f"[red]error:[/red] {message}", soft_wrap=True, highlight=False)
            raise typer.Exit(1) from None
        platform.audit.wait_witnessed()
    finally:
        platform.close()
    checks = vars(verdict.check) if verdict.check is not None else {}
    if as_json:
        print(
            json.dumps(
                {
                    "report": verdict.report_id,
                    "version": verdict.version,
                    "signed": verdict.signed,
                    "valid": verdict.valid,
                    "signer": verdict.signer_id,
                    "signed_at": verdict.signed_at,
                    "checks": checks,
                },
                sort_keys=True,
            )
        )
    else:
        table = Table(title=f"DiagnosticReport/{verdict.report_id} version {verdict.version}")
        table.add_column("check")
        table.add_column("result")
        for name, ok in checks.items():
            table.add_row(
                _LABELS.get(name, name), "[green]ok[/green]" if ok else "[red]FAILED[/red]"
            )
        console.print(table)
        if not verdict.signed:
            console.print("[red]not signed[/red]")
        elif verdict.valid:
            console.print(
                f"[green]valid signature[/green] by {verdict.signer_id} at {verdict.signed_at}"
            )
        else:
            console.print("[red]INVALID signature[/red]")
    if not verdict.valid:
        raise typer.Exit(1)
