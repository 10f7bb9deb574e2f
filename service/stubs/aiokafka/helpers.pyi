import ssl

def create_ssl_context(*, cafile: str | None = None, capath: str | None = None, cadata: str | None = None,
                       certfile: str | None = None, keyfile: str | None = None, password: str | None = None,
                       crlfile: str | None = None) -> ssl.SSLContext: ...
