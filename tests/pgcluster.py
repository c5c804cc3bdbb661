"""A throw-away PostgreSQL server for tests, CI and benchmarks.

Standard library only: CI runs this with the system ``python3`` before any virtualenv exists.

    python3 tests/pgcluster.py start DIR [--setting fsync=off ...]   # prints the URL, leaves it running
    python3 tests/pgcluster.py stop DIR

All state lives in DIR (``data/``, ``server.log``, the Unix socket), so ``stop DIR`` needs nothing else.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

SERVER_USER = "postgres"
LOG_TAIL_LINES = 30
START_ATTEMPTS = 3  # a port picked from the kernel can be taken by someone else before the server binds it


def find_bin_dir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``: from PATH, else the newest /usr/lib/postgresql/*/bin."""
    on_path = shutil.which("initdb")
    if on_path:
        # Resolve symlinks so pg_ctl (and the postgres it starts) come from the same installation as initdb.
        return Path(os.path.realpath(on_path)).parent
    candidates = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    if not candidates:
        raise RuntimeError("PostgreSQL server binaries not found (no initdb on PATH or in /usr/lib/postgresql/*/bin)")
    return max(candidates, key=lambda d: _version_key(d.parent.name))


def _version_key(name: str) -> tuple[int, ...]:
    # Numeric, so that 15 sorts after 9.6.
    return tuple(int(part) if part.isdigit() else -1 for part in name.split("."))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def _conf_line(key: str, value: str) -> str:
    # postgresql.conf quotes strings with '...' and doubles embedded quotes.
    return f"{key} = '{value.replace(chr(39), chr(39) * 2)}'\n"


class ThrowawayCluster:
    """A private PostgreSQL cluster under ``base_dir``, listening on 127.0.0.1 on a free port.

    ``settings`` are extra server settings (e.g. ``{"fsync": "off"}`` for tests); nothing is durable
    on purpose. When run as root, the server commands run as the ``postgres`` user, since postgres
    refuses to run as root.
    """

    def __init__(self, base_dir: Path, *, settings: dict[str, str] | None = None) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.data_dir = self.base_dir / "data"
        self.log_file = self.base_dir / "server.log"
        self.settings = dict(settings or {})
        self.port: int | None = None

    @property
    def url(self) -> str:
        """The connection URL of the running server (superuser ``postgres``, database ``postgres``)."""
        if self.port is None:
            raise RuntimeError("cluster not started")
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> str:
        """Create the cluster (if not there yet), start the server, wait until it accepts connections; return the URL."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._give_to_server_user()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._write_settings()
        for attempt in range(START_ATTEMPTS):
            self.port = free_port()
            result = self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data_dir),
                               "-l", str(self.log_file), "-o", f"-p {self.port}")
            if result.returncode == 0:
                return self.url
            if "already in use" not in _tail(self.log_file) or attempt == START_ATTEMPTS - 1:
                break
        self.port = None
        raise RuntimeError(f"PostgreSQL did not start ({result.stdout.strip()}); "
                           f"last lines of {self.log_file}:\n{_tail(self.log_file)}")

    def stop(self) -> None:
        """Stop the server, without a checkpoint (the data is thrown away). Does nothing if it is not running."""
        if not (self.data_dir / "postmaster.pid").exists():
            return
        result = self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data_dir))
        if result.returncode != 0 and (self.data_dir / "postmaster.pid").exists():
            raise RuntimeError(f"pg_ctl stop failed: {result.stdout.strip()}\n{_tail(self.log_file)}")
        self.port = None

    def _initdb(self) -> None:
        # --locale=C: the caller's LANG may name a locale this machine lacks, and C sorts the same everywhere.
        result = self._run("initdb", "-D", str(self.data_dir), "-A", "trust", "-U", "postgres",
                           "-E", "UTF8", "--locale=C", "--no-sync")
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed in {self.data_dir}:\n{result.stdout.strip()}")
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as f:
            f.write("\ninclude_if_exists = 'pgcluster.conf'  # written by tests/pgcluster.py at each start\n")

    def _write_settings(self) -> None:
        # Rewritten at each start, so a restart with other settings takes them.
        conf = {"listen_addresses": "127.0.0.1", "unix_socket_directories": str(self.base_dir),
                "max_connections": "300", **self.settings}
        (self.data_dir / "pgcluster.conf").write_text("".join(_conf_line(k, v) for k, v in conf.items()))

    def _give_to_server_user(self) -> None:
        # As root, postgres runs as SERVER_USER, which must own the directory it creates data/ and the log in.
        if os.geteuid() != 0:
            return
        shutil.chown(self.base_dir, SERVER_USER, SERVER_USER)
        self.base_dir.chmod(0o700)
        if self.data_dir.exists():
            shutil.chown(self.data_dir, SERVER_USER, SERVER_USER)

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [str(find_bin_dir() / tool), *args]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", SERVER_USER, "--", *argv]
        # cwd: the server user may not be allowed into the caller's working directory (e.g. /root).
        return subprocess.run(argv, cwd=self.base_dir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, check=False)


def _parse_setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def main(argv: list[str] | None = None) -> int:
    """Command line: ``start DIR [--setting k=v ...]`` prints the URL; ``stop DIR`` stops that server."""
    parser = argparse.ArgumentParser(prog="pgcluster.py", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--setting", type=_parse_setting, action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    cluster = ThrowawayCluster(args.dir, settings=dict(args.setting))
    try:
        if args.action == "start":
            print(cluster.start())
        else:
            cluster.stop()
    except (RuntimeError, OSError) as exc:
        print(f"pgcluster.py {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
