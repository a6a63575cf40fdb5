"""A real PostgreSQL server for the archive tests, from Debian's ``postgresql`` package:
``initdb`` into a temporary folder, ``pg_ctl`` on a free loopback port with its socket in
that folder, stopped at the end. As root (initdb refuses to run as root) the server runs as
the ``postgres`` OS user, on a folder it owns."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def server_bin() -> Path | None:
    """The folder holding initdb and pg_ctl, or None without a PostgreSQL server."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit()
                      else 0)
    return Path(versions[-1]).parent if versions else None


def _as_server_user() -> tuple[list[str], int | None]:
    """The command prefix that runs the server's tools, and the uid to own its folder."""
    if os.geteuid() != 0:
        return [], None
    uid = pwd.getpwnam("postgres").pw_uid  # KeyError: no postgres user
    runner = shutil.which("runuser")
    prefix = [runner, "-u", "postgres", "--"] if runner else ["su", "postgres", "-c"]
    return prefix, uid


@contextmanager
def postgres_server(port: int) -> Iterator[str]:
    """A PostgreSQL server on 127.0.0.1:``port`` while the block runs; yields its URL
    (user postgres, trust authentication, database postgres). Raises ``RuntimeError``
    when it cannot be started (its log's tail in the message)."""
    bindir = server_bin()
    if bindir is None:
        raise RuntimeError("no PostgreSQL server binaries")
    prefix, uid = _as_server_user()
    root = Path(tempfile.mkdtemp(prefix="furnace-pg-"))  # not pytest's 0700 tree: the
    data, log = root / "data", root / "server.log"  # postgres user must reach it
    if uid is not None:
        os.chown(root, uid, -1)

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(a) for a in argv]
        if prefix and prefix[-1] == "-c":  # su -c takes one shell line
            import shlex

            cmd = [*prefix, shlex.join(cmd)]
        else:
            cmd = [*prefix, *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)

    try:
        done = run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                   "--no-sync", "-E", "UTF8", "--locale=C")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()[-500:]}")
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        done = run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log),
                   "-w", "-t", "60", "start")
        if done.returncode != 0:
            tail = log.read_text(errors="replace")[-500:] if log.exists() else done.stderr
            raise RuntimeError(f"pg_ctl start failed: {tail.strip()}")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
