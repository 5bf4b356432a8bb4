"""A client that says whatever it likes on the wire: the attacker of the attack suite."""

from __future__ import annotations

import socket
import ssl
import typing

from Pyro5 import protocol

from nion_autoem.remote import security
from nion_autoem.remote import wire


class RawConnection:
    """A socket to the server (TLS when the address says so, pinned), that sends raw bytes or Pyro messages and reads raw replies."""

    def __init__(self, uri: str, *, tls: bool | None = None, timeout_s: float = 5.0) -> None:
        address = wire.parse_address(uri)
        sock = socket.create_connection((address.host, address.port), timeout=timeout_s)
        if address.tls if tls is None else tls:
            context = security.client_tls_context(fingerprint=address.fingerprint or "0" * 64, cafile=None)
            sock = context.wrap_socket(sock)
        self.sock = sock

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_message(self, msgtype: int, payload: typing.Any, *, seq: int = 1, flags: int = 0, serializer_id: int = wire.SERIALIZER_ID) -> None:
        data = payload if isinstance(payload, bytes) else wire.SERIALIZER.dumps(payload)
        message = bytearray(protocol.SendingMessage(msgtype, flags, seq, serializer_id, data).data)
        message[8:10] = flags.to_bytes(2, "big")  # Pyro clears the compression flag of what it did not compress; an attacker need not
        self.send(bytes(message))

    def connect(self, handshake: typing.Any, *, object_id: str = wire.OBJECT_ID) -> tuple[int, typing.Any]:
        """Send a CONNECT with this handshake; returns the reply's message type and decoded payload."""
        self.send_message(protocol.MSG_CONNECT, {"handshake": handshake, "object": object_id}, seq=0)
        return self.receive()

    def invoke(self, method: typing.Any, *args: typing.Any, object_id: str = wire.OBJECT_ID, flags: int = 0, **kwargs: typing.Any) -> tuple[int, typing.Any]:
        """Call any method by name; returns (flags, decoded reply): an exception object when the exception flag is set."""
        self.send_message(protocol.MSG_INVOKE, wire.SERIALIZER.dumpsCall(object_id, method, list(args), kwargs), flags=flags)
        return self.receive_result()

    def receive(self) -> tuple[int, typing.Any]:
        header = wire.parse_header(self.__recv(wire.HEADER_SIZE))
        message = wire.read_message(self.__recv, header)
        return header.type, wire.SERIALIZER.loads(bytes(message.data))

    def receive_raw(self) -> tuple[wire.Header, bytes]:
        """A reply's header and undecoded payload."""
        header = wire.parse_header(self.__recv(wire.HEADER_SIZE))
        return header, bytes(wire.read_message(self.__recv, header).data)

    def receive_result(self) -> tuple[int, typing.Any]:
        header = wire.parse_header(self.__recv(wire.HEADER_SIZE))
        message = wire.read_message(self.__recv, header)
        return header.flags, wire.SERIALIZER.loads(bytes(message.data))

    def is_closed_by_server(self) -> bool:
        """Whether the server has hung up (reads until end of stream or a timeout)."""
        try:
            while self.sock.recv(4096):
                pass
            return True
        except (ConnectionError, ssl.SSLError):
            return True
        except TimeoutError:
            return False

    def __recv(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("the server closed the connection")
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: typing.Any) -> None:
        self.close()
