"""TLS contexts for endpoints with a client certificate (mTLS) or a CA bundle of their own.

Built once per (certificate, CA bundle) and kept: a handshake reuses it. ``ssl`` loads a
certificate chain from files only, so the PEMs go to a private temporary folder for the moment
of loading and are removed at once; nothing of them stays on disk.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import ssl
import tempfile
from collections import OrderedDict

#: Contexts kept, the least recently used going first: each holds its own trust store
#: (about 1 MB, some 20 ms to build), so endpoints with TLS options beyond it rebuild in turn.
MAX_CONTEXTS = 128


class TlsContexts:
    def __init__(self) -> None:
        self._built: OrderedDict[str, ssl.SSLContext] = OrderedDict()

    def context_for(self, cert: dict[str, str] | None, ca: str | None) -> ssl.SSLContext | None:
        """The context for an endpoint's requests; None: the default verification, no client cert."""
        if cert is None and ca is None:
            return None
        key = hashlib.sha256(repr((cert and (cert["cert"], cert["key"]), ca)).encode()).hexdigest()
        context = self._built.get(key)
        if context is None:
            context = self._built[key] = build(cert, ca)
            if len(self._built) > MAX_CONTEXTS:
                self._built.popitem(last=False)
        else:
            self._built.move_to_end(key)
        return context


def build(cert: dict[str, str] | None, ca: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca) if ca else ssl.create_default_context()
    if cert is not None:
        folder = tempfile.mkdtemp(prefix="jobwire-tls-")  # mode 0700
        try:
            certfile, keyfile = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
            for path, pem in ((certfile, cert["cert"]), (keyfile, cert["key"])):
                with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
                    out.write(pem)
            context.load_cert_chain(certfile, keyfile)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return context
