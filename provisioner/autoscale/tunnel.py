"""A local port forward over an open SSH connection (what ``ssh -L`` does), for the length of a ``with`` block.

The Kubernetes API server of a cluster is usually not reachable from where the autoscaler runs: kubeadm's
kubeconfig names the front-end's private address, K3s' names ``127.0.0.1``, and port 6443 is often closed in the
cloud's security group. SSH to the front-end is open (it is how the cluster is installed), so the autoscaler asks
the API server through it: :func:`local_forward` listens on ``127.0.0.1:<ephemeral>`` and carries every connection
made to it through a ``direct-tcpip`` channel of the front-end's SSH transport to the API server's host and port,
as the front-end sees them. TLS stays end to end (the front-end only relays bytes); the caller verifies the
server's certificate against the kubeconfig's CA and the kubeconfig's host name.

The SSH connection itself comes from :func:`provisioner.ansible.ssh.session` (host keys pinned, jump hosts).
One thread relays every connection of one forward; it stops when the block ends.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import paramiko

_CHUNK = 65536


@dataclass
class Forward:
    """A running forward: connect to ``127.0.0.1:port``; ``errors`` says why a channel could not be opened."""

    port: int
    target: tuple[str, int]
    errors: list[str] = field(default_factory=list)

    def describe_failure(self) -> str | None:
        """Why the front-end could not reach the target, if it could not (the last channel error)."""
        return self.errors[-1] if self.errors else None


@contextlib.contextmanager
def local_forward(transport: paramiko.Transport, target: tuple[str, int], *, timeout: float) -> Iterator[Forward]:
    """Forward ``127.0.0.1:<ephemeral>`` to ``target`` through ``transport`` until the block ends."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    wake_r, wake_w = socket.socketpair()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        forward = Forward(port=int(listener.getsockname()[1]), target=target)
        relay = _Relay(transport, listener, wake_r, forward, timeout)
        thread = threading.Thread(target=relay.run, name=f"ssh-forward-{target[0]}:{target[1]}", daemon=True)
        thread.start()
        try:
            yield forward
        finally:
            with contextlib.suppress(OSError):
                wake_w.send(b"x")
            thread.join(timeout + 5)
    finally:
        for sock in (listener, wake_r, wake_w):
            sock.close()


class _Relay:
    """The forward's one thread: accept local connections, open a channel for each, copy bytes both ways."""

    def __init__(
        self,
        transport: paramiko.Transport,
        listener: socket.socket,
        wake: socket.socket,
        forward: Forward,
        timeout: float,
    ) -> None:
        self.transport = transport
        self.listener = listener
        self.wake = wake
        self.forward = forward
        self.timeout = timeout
        self.selector = selectors.DefaultSelector()
        self.peers: dict[Any, Any] = {}  # local socket <-> channel, both ways

    def run(self) -> None:
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wake, selectors.EVENT_READ, "stop")
        try:
            while True:
                for key, _ in self.selector.select():
                    if key.data == "stop":
                        return
                    if key.data == "accept":
                        self.accept()
                    else:
                        self.pump(key.fileobj)
        finally:
            for end in list(self.peers):
                with contextlib.suppress(OSError, EOFError):
                    end.close()
            self.selector.close()

    def accept(self) -> None:
        import paramiko

        try:
            conn, origin = self.listener.accept()
        except OSError:
            return
        try:
            channel = self.transport.open_channel(
                "direct-tcpip", self.forward.target, (origin[0], int(origin[1])), timeout=self.timeout
            )
        except (paramiko.SSHException, OSError, EOFError) as exc:
            host, port = self.forward.target
            reason = str(exc).strip() or type(exc).__name__
            self.forward.errors.append(f"the front-end cannot connect to {host}:{port} ({reason})")
            conn.close()
            return
        self.peers[conn] = channel
        self.peers[channel] = conn
        self.selector.register(conn, selectors.EVENT_READ, "sock")
        self.selector.register(channel, selectors.EVENT_READ, "chan")

    def pump(self, source: Any) -> None:
        sink = self.peers.get(source)
        if sink is None:
            return
        try:
            data = source.recv(_CHUNK)
            if data:
                sink.sendall(data)
                return
        except OSError:
            pass
        self.drop(source, sink)

    def drop(self, *ends: Any) -> None:
        for end in ends:
            self.peers.pop(end, None)
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(end)
            with contextlib.suppress(OSError, EOFError):
                end.close()
