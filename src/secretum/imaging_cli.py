"""``secretum imaging node ...`` (register, list, revoke imaging nodes; issue a node's client
certificate from the internal CA), ``secretum dicom`` (the DIMSE server alone) and the DIMSE
server that ``secretum serve`` starts beside HTTPS when ``SECRETUM_DICOM_ENABLED``.

An entry point: it opens the platform through the composition root.
"""

from __future__ import annotations

import secrets
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from secretum.bootstrap import Platform, PlatformError, open_platform
from secretum.config import Settings
from secretum.imaging.dimse import DicomServer, client_ssl_context, server_ssl_context
from secretum.imaging.nodes import NodeError, check_ae_title

console = Console()
err = Console(stderr=True)

imaging_app = typer.Typer(help="Imaging: DICOM nodes, DIMSE over TLS 1.3.", no_args_is_help=True)
node_app = typer.Typer(
    help="Imaging nodes (modalities, PACS, AI services) and their certificates.",
    no_args_is_help=True,
)
imaging_app.add_typer(node_app, name="node")


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True, highlight=False)
    return typer.Exit(code=1)


def _open() -> Platform:
    try:
        return open_platform(Settings(), dev=True)
    except PlatformError as exc:
        raise _fail(str(exc)) from None


@node_app.command("add")
def node_add(
    name: Annotated[str, typer.Argument(help="a name for people, e.g. 'CT Hopital Nord'")],
    ae_title: Annotated[str, typer.Argument(help="its AE title (1-16 characters, unique)")],
    scopes: Annotated[str, typer.Option(help="comma-separated: store, query, retrieve")] = "store",
    cert: Annotated[
        Path | None,
        typer.Option(help="bind this certificate (PEM or DER) instead of issuing one"),
    ] = None,
    out: Annotated[
        Path, typer.Option(help="folder for the issued <node>.pem, <node>.key and ca.pem")
    ] = Path("."),
    host: Annotated[str | None, typer.Option(help="where it listens (C-MOVE)")] = None,
    port: Annotated[int | None, typer.Option(help="its DICOM port (C-MOVE)")] = None,
) -> None:
    """Register a node. Without --cert, a key and a client certificate are issued by the
    internal CA and written to --out (key 0600), with the CA certificate to trust."""
    from secretum.pki import (
        certificate_to_pem,
        generate_leaf_key,
        issue_client_certificate,
        write_certificates_pem,
        write_private_key_pem,
    )

    platform = _open()
    try:
        node_id = f"node-{secrets.token_hex(8)}"
        key = None
        if cert is not None:
            certificate = cert.read_bytes()
        else:
            ca = platform.certificate_authority()
            key = generate_leaf_key()
            issued = issue_client_certificate(ca, node_id, key.public_key(), platform.clock())
            certificate = certificate_to_pem(issued)
        node = platform.services.imaging_nodes.register(
            name,
            ae_title,
            certificate,
            scopes.split(","),
            platform.clock(),
            host=host,
            port=port,
            node_id=node_id,
        )
        if key is not None:
            out.mkdir(parents=True, exist_ok=True)
            write_private_key_pem(out / f"{node_id}.key", key)
            (out / f"{node_id}.pem").write_bytes(certificate)
            ca_cert = platform.certificate_authority().certificate
            write_certificates_pem(out / "ca.pem", [ca_cert])
            console.print(
                f"[green]issued[/green] {out / (node_id + '.pem')} (key 0600 beside it;"
                f" trust {out / 'ca.pem'})",
                soft_wrap=True,
            )
        platform.audit.wait_witnessed()
    except (NodeError, OSError) as exc:
        raise _fail(str(exc)) from None
    finally:
        platform.close()
    console.print(
        f"[green]registered[/green] {node.node_id} AE {escape(node.ae_title)}"
        f" scopes {','.join(sorted(node.scopes)) or '-'}",
        soft_wrap=True,
    )


@node_app.command("list")
def node_list(
    all_: Annotated[bool, typer.Option("--all", help="revoked nodes too")] = False,
) -> None:
    """The registered nodes."""
    platform = _open()
    try:
        nodes = platform.services.imaging_nodes.list(include_revoked=all_)
    finally:
        platform.close()
    table = Table("node", "name", "AE title", "scopes", "C-MOVE to", "certificate", "active")
    for n in nodes:
        where = f"{n.host}:{n.port}" if n.host else "-"
        table.add_row(
            n.node_id,
            escape(n.name),
            escape(n.ae_title),
            ",".join(sorted(n.scopes)),
            escape(where),
            n.cert_sha256.hex()[:16] + "…",
            "yes" if n.active else "revoked",
        )
    console.print(table)


@node_app.command("revoke")
def node_revoke(node_id: Annotated[str, typer.Argument(help="the node id (see list)")]) -> None:
    """Revoke a node: its certificate and AE title are refused from now on."""
    platform = _open()
    try:
        done = platform.services.imaging_nodes.revoke(node_id, platform.clock())
        platform.audit.wait_witnessed()
    finally:
        platform.close()
    if not done:
        raise _fail("no such active node")
    console.print(f"[green]revoked[/green] {escape(node_id)}")


# -- the DIMSE server ---------------------------------------------------------------------------


def build_dicom_server(platform: Platform, settings: Settings) -> DicomServer:
    """The DIMSE server of ``platform``: TLS 1.3 with the server identity of the internal CA,
    client certificates required; for C-MOVE, a client certificate of its own (issued by the
    internal CA at each start, key 0600 in the PKI folder)."""
    from secretum.pki import (
        generate_leaf_key,
        issue_client_certificate,
        write_certificates_pem,
        write_private_key_pem,
    )

    identity = platform.server_identity()
    key = generate_leaf_key()
    ca = platform.certificate_authority()
    cert = issue_client_certificate(ca, "secretum-dicom", key.public_key(), platform.clock())
    move_cert = settings.pki_dir / "dicom-client.pem"
    move_key = settings.pki_dir / "dicom-client.key"
    write_private_key_pem(move_key, key)
    write_certificates_pem(move_cert, [cert])
    services = platform.services
    return DicomServer(
        services.imaging,
        services.imaging_nodes,
        platform.audit,
        ae_title=check_ae_title(settings.dicom_ae_title),
        ssl_context=server_ssl_context(identity.certfile, identity.keyfile, identity.cafile),
        move_ssl_context=client_ssl_context(identity.cafile, move_cert, move_key),
        clock=platform.clock,
    )


def start_dicom(platform: Platform, settings: Settings) -> DicomServer:
    """Build and start the DIMSE server on ``settings.host:settings.dicom_port``."""
    server = build_dicom_server(platform, settings)
    port = server.start(settings.host, settings.dicom_port)
    console.print(
        f"DICOM (DIMSE) AE [bold]{escape(server.ae_title)}[/bold] on {settings.host}:{port},"
        " TLS 1.3 only, registered nodes with their certificate",
        soft_wrap=True,
    )
    return server


def dicom() -> None:
    """Serve DIMSE over TLS 1.3 alone (C-ECHO, C-STORE, C-FIND, C-GET, C-MOVE) for the
    registered imaging nodes, until interrupted."""
    settings = Settings()
    platform = _open()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        server = start_dicom(platform, settings)
    except (NodeError, OSError) as exc:
        platform.close()
        raise _fail(str(exc)) from None
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        platform.close()
