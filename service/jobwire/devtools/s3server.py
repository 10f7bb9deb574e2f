"""A real S3-compatible server on loopback for development and tests: S3Proxy
(https://github.com/gaul/s3proxy), the server jclouds and many S3 clients test against.

Its jars come from Maven Central through ``deploy/s3proxy/pom.xml``, fetched once into the
cache the Kafka jars use (``~/.cache/jobwire/s3proxy-<version>/lib`` by default). It checks AWS
signatures (v2 and v4, presigned URLs too) against one fixed test key pair and keeps objects in
``run_dir/data`` with the ``filesystem-nio2`` provider (the plain ``filesystem`` one is
deprecated in S3Proxy 2.6). It binds to 127.0.0.1 only and gets SIGKILL when its parent dies.
"""

from __future__ import annotations

import http.client
import logging
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from jobwire.devtools.broker import free_port, port_taken, set_parent_death_signal, terminate
from jobwire.devtools.maven import fetch_jars
from jobwire.errors import JobwireError

log = logging.getLogger(__name__)

MAIN_CLASS = "org.gaul.s3proxy.Main"
#: The only credentials the server accepts: test values, never secrets.
ACCESS_KEY = "jobwire-test-access"
SECRET_KEY = "jobwire-test-secret"

#: Without a configuration logback logs at DEBUG: every Jetty event, for every request.
_LOGBACK = """<configuration>
  <appender name="out" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d{HH:mm:ss.SSS} %-5level %logger{36} - %msg%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="out"/></root>
  <logger name="org.gaul.s3proxy" level="INFO"/>
</configuration>
"""


class S3ServerError(JobwireError):
    """The local S3 server could not be fetched or started; the message carries its log tail."""


def recipe_dir() -> Path:
    """pom.xml: in the wheel, or in the source checkout."""
    packaged = Path(__file__).parent.parent / "s3proxy_recipe"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[3] / "deploy" / "s3proxy"


def s3proxy_version(recipe: Path | None = None) -> str:
    pom = ((recipe or recipe_dir()) / "pom.xml").read_text()
    found = re.search(r"<s3proxy.version>([^<]+)</s3proxy.version>", pom)
    if not found:
        raise S3ServerError("deploy/s3proxy/pom.xml does not set <s3proxy.version>")
    return found.group(1)


def ensure_jars(cache_dir: Path, *, quiet: bool = False) -> Path:
    """The folder of S3Proxy jars, fetching them with Maven the first time (locked)."""
    recipe = recipe_dir()
    version = s3proxy_version(recipe)
    return fetch_jars(recipe, cache_dir / f"s3proxy-{version}" / "lib", f"S3Proxy {version}", S3ServerError,
                      quiet=quiet)


def answers_http(host: str, port: int, timeout_s: float) -> bool:
    """Whether an HTTP request gets an answer, whatever its status (no proxy in between)."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        connection.request("GET", "/")
        connection.getresponse().read()
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
    return True


@dataclass
class S3Server:
    """S3Proxy on 127.0.0.1: ``start()``, ``stop()``, and ``endpoint_url``, ``access_key`` and
    ``secret_key`` for clients. ``run_dir`` holds its configuration, ``data/`` and its log."""

    cache_dir: Path
    run_dir: Path
    port: int = 0  # 0: a free port, chosen at start
    heap: str = "256m"

    def __post_init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_key(self) -> str:
        return ACCESS_KEY

    @property
    def secret_key(self) -> str:
        return SECRET_KEY

    @property
    def log_file(self) -> Path:
        return self.run_dir / "s3proxy.log"

    def log_tail(self, lines: int = 25) -> str:
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def _configure(self) -> Path:
        data = self.run_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "logback.xml").write_text(_LOGBACK)
        properties = self.run_dir / "s3proxy.properties"
        properties.write_text("\n".join([
            f"s3proxy.endpoint={self.endpoint_url}",
            "s3proxy.authorization=aws-v2-or-v4",
            f"s3proxy.identity={ACCESS_KEY}",
            f"s3proxy.credential={SECRET_KEY}",
            "jclouds.provider=filesystem-nio2",
            f"jclouds.filesystem.basedir={data}",
            # Required by S3Proxy for every provider but the legacy local ones; unused by this one.
            "jclouds.identity=local",
            "jclouds.credential=local",
            "",
        ]))
        return properties

    def start(self, timeout_s: float = 90.0) -> None:
        """Fetch jars if needed (not timed: once, and as slow as the network), start, and wait
        until the endpoint answers HTTP."""
        if shutil.which("java") is None:
            raise S3ServerError("Java 17+ is needed to run the local S3 server: `java` is not on PATH")
        lib = ensure_jars(self.cache_dir)
        started_at = time.monotonic()
        self.port = self.port or free_port()
        if port_taken(self.port):  # else another server's answer would pass for this one's
            raise S3ServerError(f"port {self.port} on 127.0.0.1 is taken")
        properties = self._configure()
        command = [
            # A small server for tests: a quick start matters more than peak speed.
            "java", f"-Xmx{self.heap}", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
            f"-Dlogback.configurationFile={self.run_dir / 'logback.xml'}",
            "-cp", f"{lib}/*", MAIN_CLASS, "--properties", str(properties),
        ]
        with open(self.log_file, "ab") as output:
            self._process = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=set_parent_death_signal, start_new_session=True,
            )
        while time.monotonic() - started_at < timeout_s:
            code = self._process.poll()
            if code is not None:
                self._process = None
                raise S3ServerError(f"S3Proxy exited with code {code} while starting; its log ends:\n{self.log_tail()}")
            if answers_http("127.0.0.1", self.port, timeout_s=1.0):
                log.info("s3proxy ready endpoint=%s pid=%s start_s=%.1f",
                         self.endpoint_url, self._process.pid, time.monotonic() - started_at)
                return
            time.sleep(0.1)
        self.stop()
        raise S3ServerError(f"S3Proxy did not answer within {timeout_s:.0f}s; its log ends:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited in ``timeout_s``."""
        if self._process is not None:
            terminate(self._process.pid, timeout_s, self._process)
            self._process = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None
