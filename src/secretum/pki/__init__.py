"""Internal PKI: root CA, server and client certificates (pure ``cryptography``, no web imports).

Typical start-up (the lead's composition root)::

    ca = create_root_ca(now)                      # once; wrap private_key_to_der(ca.private_key)
    ident = load_or_create_server_identity(
        settings.pki_dir, ca_certificate=ca.certificate, unlock_ca=lambda: ca,
        names=settings.server_names, now=now)
    serve(app, host=..., port=..., certfile=ident.certfile, keyfile=ident.keyfile,
          cafile=ident.cafile)
"""

from secretum.pki.ca import (
    CA_COMMON_NAME,
    CA_VALIDITY,
    CLIENT_VALIDITY,
    SERVER_VALIDITY,
    CertificateAuthority,
    PKIError,
    common_name,
    create_root_ca,
    generate_ca_key,
    generate_leaf_key,
    issue_client_certificate,
    issue_client_certificate_from_csr,
    issue_server_certificate,
)
from secretum.pki.identity import ServerIdentity, load_or_create_server_identity
from secretum.pki.pem import (
    certificate_from_pem,
    certificate_to_pem,
    certificates_from_pem,
    certificates_to_pem,
    private_key_from_der,
    private_key_from_pem,
    private_key_to_der,
    private_key_to_pem,
    write_certificates_pem,
    write_private_key_pem,
)
from secretum.pki.verify import (
    CertificateRejected,
    certificate_names,
    verify_client_certificate,
    verify_server_certificate,
)

__all__ = [
    "CA_COMMON_NAME",
    "CA_VALIDITY",
    "CLIENT_VALIDITY",
    "SERVER_VALIDITY",
    "CertificateAuthority",
    "CertificateRejected",
    "PKIError",
    "ServerIdentity",
    "certificate_from_pem",
    "certificate_names",
    "certificate_to_pem",
    "certificates_from_pem",
    "certificates_to_pem",
    "common_name",
    "create_root_ca",
    "generate_ca_key",
    "generate_leaf_key",
    "issue_client_certificate",
    "issue_client_certificate_from_csr",
    "issue_server_certificate",
    "load_or_create_server_identity",
    "private_key_from_der",
    "private_key_from_pem",
    "private_key_to_der",
    "private_key_to_pem",
    "verify_client_certificate",
    "verify_server_certificate",
    "write_certificates_pem",
    "write_private_key_pem",
]
