"""``secretum audit ...``: verify the log, print proofs, sign a checkpoint, export AuditEvents.

The commands get the platform from :func:`secretum.bootstrap.open_platform` (imported when a
command runs): ``platform.audit`` (an :class:`~secretum.audit.log.AuditLog`),
``platform.audit_public_key`` (the Ed25519 public key(s) checkpoints are verified with).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from secretum.audit.log import AuditLog
from secretum.audit.model import ID_PATTERN
from secretum.audit.verify import VerifyReport

audit_app = typer.Typer(
    help="Tamper-evident audit log (RFC 9162 Merkle tree).", no_args_is_help=True
)
proof_app = typer.Typer(help="Inclusion and consistency proofs (RFC 9162 §2.1.3, §2.1.4).")
audit_app.add_typer(proof_app, name="proof")

_PROGRESS_FROM = 100_000  # show a progress bar for logs at least this long


def _platform() -> Any:
    from secretum.bootstrap import open_platform  # the composition root, loaded on demand

    return open_platform()


def _console() -> Console:
    return Console(highlight=False)


@audit_app.command()
def verify(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Recompute the tree, check every entry and checkpoint; exit 1 if anything is wrong."""
    platform = _platform()
    log: AuditLog = platform.audit
    console = _console()
    size, _ = log.tree_head()
    if size >= _PROGRESS_FROM and not as_json:
        columns = (*Progress.get_default_columns()[:2], BarColumn(), MofNCompleteColumn())
        with Progress(*columns, TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task("verifying", total=size)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            report = log.verify(platform.audit_public_key, progress=advance)
    else:
        report = log.verify(platform.audit_public_key)
    if as_json:
        typer.echo(json.dumps(_report_json(report), indent=2))
    else:
        _print_report(console, report)
    raise typer.Exit(0 if report.ok else 1)


def _report_json(report: VerifyReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "entries_verified": report.entries_verified,
        "root_hash": report.root_hash.hex(),
        "checkpoints_verified": report.checkpoints_verified,
        "witnessed_size": report.witnessed_size,
        "findings": [
            {"kind": f.kind.value, "seq": f.seq, "tree_size": f.tree_size, "message": f.message}
            for f in report.findings
        ],
        "notes": report.notes,
    }


def _print_report(console: Console, report: VerifyReport) -> None:
    console.print(f"entries verified: {report.entries_verified}")
    console.print(f"root hash: {report.root_hash.hex()}")
    console.print(f"signed roots matched: {report.checkpoints_verified}")
    console.print(f"witnessed up to size: {report.witnessed_size}")
    for note in report.notes:
        console.print(f"[dim]note: {note}[/dim]")
    if report.ok:
        console.print("[bold green]audit log OK[/bold green]")
        return
    table = Table("kind", "seq", "checkpoint", "message", title="[bold red]audit log TAMPERED")
    for f in report.findings:
        table.add_row(f.kind.value, _opt(f.seq), _opt(f.tree_size), f.message)
    console.print(table)
    first = report.first
    if first is not None:
        console.print(f"[bold red]first problem: {first.kind.value} at {_opt(first.seq)}[/]")


def _opt(value: int | None) -> str:
    return "-" if value is None else str(value)


@proof_app.command("inclusion")
def proof_inclusion(
    seq: Annotated[int, typer.Argument(help="Entry number.")],
    size: Annotated[int | None, typer.Option(help="Tree size (default: last checkpoint).")] = None,
) -> None:
    """Print the inclusion proof of entry SEQ, and check it."""
    log: AuditLog = _platform().audit
    try:
        proof = log.inclusion_proof(seq, size)
    except (ValueError, LookupError) as exc:
        raise typer.BadParameter(str(exc)) from None
    signed = _signed_root(log, proof.tree_size)
    typer.echo(
        json.dumps(
            {
                "leaf_index": proof.leaf_index,
                "tree_size": proof.tree_size,
                "leaf_hash": proof.leaf_hash.hex(),
                "root_hash": proof.root_hash.hex(),
                "inclusion_path": [h.hex() for h in proof.path],
                "verified": proof.verify(),
                "root_signed": signed == proof.root_hash if signed else None,
            },
            indent=2,
        )
    )
    raise typer.Exit(0 if proof.verify() and signed in (None, proof.root_hash) else 1)


@proof_app.command("consistency")
def proof_consistency(
    old: Annotated[int, typer.Argument(help="Size of the older tree.")],
    new: Annotated[int, typer.Argument(help="Size of the newer tree.")],
) -> None:
    """Print the consistency proof between tree sizes OLD and NEW, and check it."""
    log: AuditLog = _platform().audit
    try:
        proof = log.consistency_proof(old, new)
    except (ValueError, LookupError) as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(
        json.dumps(
            {
                "first": proof.first,
                "second": proof.second,
                "first_hash": proof.first_hash.hex(),
                "second_hash": proof.second_hash.hex(),
                "consistency_path": [h.hex() for h in proof.path],
                "verified": proof.verify(),
            },
            indent=2,
        )
    )
    raise typer.Exit(0 if proof.verify() else 1)


def _signed_root(log: AuditLog, tree_size: int) -> bytes | None:
    for cp in log.checkpoints():
        if cp.tree_size == tree_size:
            return cp.root_hash
    return None


@audit_app.command()
def checkpoint() -> None:
    """Sign a checkpoint of the current tree now and copy it to the witness file."""
    log: AuditLog = _platform().audit
    cp = log.checkpoint(datetime.now(UTC))
    if cp is None:
        size = log.flush_witness()
        typer.echo(f"no new entries since the last checkpoint (witness at size {size})")
        return
    typer.echo(f"checkpoint: size {cp.tree_size}, root {cp.root_hash.hex()}")


@audit_app.command()
def export(
    patient: Annotated[str | None, typer.Option(help="Only this patient's entries.")] = None,
    out: Annotated[Path | None, typer.Option(help="NDJSON file (default: stdout).")] = None,
) -> None:
    """Export entries as FHIR R4 AuditEvent resources, one JSON object per line (NDJSON)."""
    if patient is not None and ID_PATTERN.fullmatch(patient) is None:
        raise typer.BadParameter("a patient id is [A-Za-z0-9.-]{1,64}", param_hint="--patient")
    log: AuditLog = _platform().audit
    count = 0
    stream = out.open("w", encoding="utf-8") if out is not None else sys.stdout
    try:
        for resource in log.export_fhir(patient_id=patient):
            stream.write(json.dumps(resource, separators=(",", ":")) + "\n")
            count += 1
    finally:
        if out is not None:
            stream.close()
    if out is not None:
        typer.echo(f"{count} AuditEvent resources written to {out}")
