"""Loading certificates and keys named in tls.conf."""

import ssl


def server_context(cert_file, key_file, min_version="TLSv1.2"):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = getattr(ssl.TLSVersion, min_version.replace(".", "_"))
    context.load_cert_chain(cert_file, key_file)
    return context
