"""A throwaway Dovecot IMAP server for tests: Debian's ``dovecot`` binary with a config, a passwd-file user
and a Maildir under a temporary folder, on 127.0.0.1 (plain + STARTTLS port and an implicit-TLS port), with a
self-signed certificate made here. No system service is touched.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.certificates import self_signed_certificate

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER = "bounces"
PASSWORD = "throwaway-test-password"


@dataclass(frozen=True)
class Dovecot:
    """A running server: ``port`` (plain, STARTTLS offered), ``tls_port`` (implicit TLS), the CA to trust."""

    host: str
    port: int
    tls_port: int
    ca_file: Path
    user: str = USER
    password: str = PASSWORD


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dovecot exited: {log.read_text() if log.exists() else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
                if connection.recv(100).startswith(b"* OK"):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"dovecot did not answer on {port}: {log.read_text() if log.exists() else ''}")


@contextmanager
def running_dovecot() -> Iterator[Dovecot]:
    """Start Dovecot in the foreground under a fresh temporary folder; stop it and remove the folder on exit."""
    root = Path(tempfile.mkdtemp(prefix="dovecot-test-"))
    root.chmod(0o755)  # the mail processes run as the mail user
    if os.geteuid() == 0:
        internal, login = "dovecot", "dovenull"
        mail_user = pwd.getpwnam("dovecot")
    else:
        mail_user = pwd.getpwuid(os.geteuid())
        internal = login = mail_user.pw_name
    mail = root / "mail"
    mail.mkdir()
    os.chown(mail, mail_user.pw_uid, mail_user.pw_gid)
    cert, key = self_signed_certificate(root)
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
    port, tls_port = _free_port(), _free_port()
    log = root / "dovecot.log"
    (root / "dovecot.conf").write_text(
        f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {log}
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain
default_internal_user = {internal}
default_internal_group = {grp.getgrgid(pwd.getpwnam(internal).pw_gid).gr_name}
default_login_user = {login}
first_valid_uid = {mail_user.pw_uid}
last_valid_uid = 0
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_user.pw_uid} gid={mail_user.pw_gid} home={mail}/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""
    )
    process = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(root / "dovecot.conf")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        _wait(port, process, log)
        yield Dovecot("127.0.0.1", port, tls_port, cert)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        shutil.rmtree(root, ignore_errors=True)
