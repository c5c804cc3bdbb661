"""A PostgreSQL server a writer reaches over a network that a test can cut, for real.

Two network namespaces of their own (nothing of the host's network is touched), joined by
a veth pair: the server listens on :data:`SERVER_IP` in the first; a writer started with
:meth:`NetPair.in_writer_net` reaches it from :data:`WRITER_IP` in the second. Readers
use the server's Unix socket, which no network cut affects. :meth:`NetPair.partition`
adds a blackhole route to the writer on the server's side: the server's packets to the
writer are dropped, so neither end hears from the other (a real partition: TCP
retransmissions, keepalives and ``tcp_user_timeout`` behave as on a cut cable).

Needs root (``unshare --net``, ``nsenter``, ``ip``); a test that needs it fails without it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from pgcluster import ThrowawayCluster

SERVER_IP = "10.231.77.1"
WRITER_IP = "10.231.77.2"


def _ip(net_pid: int, *args: str) -> None:
    subprocess.run(["nsenter", f"--net=/proc/{net_pid}/ns/net", "ip", *args], check=True,
                   capture_output=True, text=True)


class NetPair:
    """The two namespaces (each held open by a sleeping process) and the veth between them."""

    def __init__(self) -> None:
        if shutil.which("nsenter") is None or shutil.which("ip") is None:
            raise RuntimeError("needs nsenter and ip (util-linux, iproute2)")
        self._holders = [subprocess.Popen(["unshare", "--net", "sleep", "3600"]) for _ in range(2)]
        self.server_pid, self.writer_pid = (p.pid for p in self._holders)
        try:
            self._wire()
        except (subprocess.CalledProcessError, OSError):
            self.close()
            raise

    def _wire(self) -> None:
        for pid in (self.server_pid, self.writer_pid):
            self._wait_unshared(pid)
            _ip(pid, "link", "set", "lo", "up")
        _ip(self.server_pid, "link", "add", "rjs", "type", "veth", "peer", "name", "rjw")
        _ip(self.server_pid, "link", "set", "rjw", "netns", str(self.writer_pid))
        for pid, dev, addr in ((self.server_pid, "rjs", SERVER_IP), (self.writer_pid, "rjw", WRITER_IP)):
            _ip(pid, "addr", "add", f"{addr}/24", "dev", dev)
            _ip(pid, "link", "set", dev, "up")

    @staticmethod
    def _wait_unshared(pid: int) -> None:
        """``unshare`` execs ``sleep`` once the namespace exists: wait for that exec."""
        import time

        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}/comm").read_text().strip() != "sleep":
            if time.monotonic() > deadline:
                raise RuntimeError("unshare --net did not start")
            time.sleep(0.01)

    def in_server_net(self, argv: list[str]) -> list[str]:
        """``argv`` run in the server's network namespace."""
        return ["nsenter", f"--net=/proc/{self.server_pid}/ns/net", *argv]

    def in_writer_net(self, argv: list[str]) -> list[str]:
        """``argv`` run in the writer's network namespace."""
        return ["nsenter", f"--net=/proc/{self.writer_pid}/ns/net", *argv]

    def partition(self) -> None:
        """Cut the writer off the server: whatever the server's side sends to it is dropped, so the
        writer hears nothing (its packets arrive unanswered) and the server's probes go unanswered."""
        _ip(self.server_pid, "route", "add", "blackhole", f"{WRITER_IP}/32")

    def heal(self) -> None:
        """Undo :meth:`partition`."""
        _ip(self.server_pid, "route", "del", "blackhole", f"{WRITER_IP}/32")

    def heal_quietly(self) -> None:
        """:meth:`heal`, if the link is cut (nothing otherwise)."""
        try:
            self.heal()
        except subprocess.CalledProcessError:
            pass

    def close(self) -> None:
        """End both namespaces (with their holders; the veth goes with them)."""
        for holder in self._holders:
            holder.kill()
            holder.wait()


class NetCluster(ThrowawayCluster):
    """A throw-away cluster whose server runs in ``net``'s server namespace, on :data:`SERVER_IP`."""

    def __init__(self, base_dir: Path, net: NetPair, *, settings: dict[str, str] | None = None) -> None:
        super().__init__(base_dir, settings=settings)
        self.net = net

    @property
    def writer_url(self) -> str:
        """The URL a writer in the writer namespace connects with (TCP, through the cuttable link)."""
        return f"postgresql://postgres@{SERVER_IP}:{self.port}/postgres"

    @property
    def url(self) -> str:
        """The URL readers use: the Unix socket, which no network cut affects."""
        if self.port is None:
            raise RuntimeError("cluster not started")
        return f"postgresql://postgres@/postgres?host={self.base_dir}&port={self.port}"

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every session ends, the server comes back on the same port."""
        result = self._run("pg_ctl", "restart", "-w", "-t", "60", "-m", "fast", "-D", str(self.data_dir),
                           "-l", str(self.log_file), "-o", f"-p {self.port}")
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl restart failed: {result.stdout.strip()}")

    def _initdb(self) -> None:
        super()._initdb()
        with open(self.data_dir / "pg_hba.conf", "a", encoding="utf-8") as f:
            f.write(f"host all all {WRITER_IP}/32 trust\n")

    def _write_settings(self) -> None:
        super()._write_settings()
        conf = self.data_dir / "pgcluster.conf"
        conf.write_text(conf.read_text().replace("listen_addresses = '127.0.0.1'",
                                                 f"listen_addresses = '{SERVER_IP}'"))

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        import os

        from pgcluster import SERVER_USER, find_bin_dir

        argv = [str(find_bin_dir() / tool), *args]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", SERVER_USER, "--", *argv]
        return subprocess.run(self.net.in_server_net(argv), cwd=self.base_dir, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
