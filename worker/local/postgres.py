"""A throwaway PostgreSQL cluster on loopback, for the tests, the chaos suite and the
benchmarks: Debian's `postgresql` binaries, a data folder of its own, `fsync=off` (a
cluster that lives for one run). PostgreSQL refuses to run as root, so as root the
cluster belongs to the `postgres` user that Debian's package creates."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

from worker.local.ports import free_port


class Postgres:
    """`start()` makes the cluster and its database; `ctl("restart", "immediate")` crashes
    and restarts it (the chaos suite); `stop()` ends it and removes its folder."""

    def __init__(self, base: Path, database: str = "dunning", host: str = "127.0.0.1") -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql; `make system` does)")
        self.bin = Path(found[-1]).parent
        self.base, self.data, self.database, self.host = base, base / "data", database, host  # host: where it listens
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.port = free_port()
        self.extra = ""  # more server settings, given to `start`

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{self.database}"

    def start(self, *settings: str) -> Postgres:
        """Make and start the cluster; `settings` are more `name=value` server settings."""
        self.base.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres")
        subprocess.run([*self.as_user, str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A",
                        "trust", "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
        if self.host != "127.0.0.1":  # other hosts on its subnet (`worker/local/hosts.py`) may connect
            with open(self.data / "pg_hba.conf", "a", encoding="utf-8") as rules:
                rules.write("host all all samenet trust\n")
        self.extra = " ".join(f"-c {setting}" for setting in settings)
        self.ctl("start")
        subprocess.run([*self.as_user, str(self.bin / "createdb"), "-h", self.host, "-p", str(self.port), "-U",
                        "postgres", self.database], check=True, capture_output=True)
        return self

    def ctl(self, action: str, mode: str = "fast") -> None:
        options = f"-p {self.port} -c listen_addresses={self.host} -k {self.base} -c fsync=off {self.extra}"
        subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-o",
                        options, "-l", str(self.base / "pg.log"), action], check=True, capture_output=True)

    def stop(self) -> None:
        try:
            self.ctl("stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
