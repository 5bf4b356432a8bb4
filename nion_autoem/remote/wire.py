"""The wire: Pyro5's message framing, msgpack only, with size limits checked before a byte of payload is read.

Pyro5 frames every message with a 40-byte header (message type, serializer,
flags, sizes).  The server reads that header itself and refuses, before
reading or decoding the payload, what it never accepts: another serializer
(marshal is not safe on hostile input), compressed payloads (a zip bomb),
batched, one-way or pass-through calls, and anything larger than
:data:`MAX_REQUEST_BYTES`.  Payloads are decoded with plain msgpack (no
extension types, no class hooks), so a request can only ever be numbers,
strings, bytes, lists and maps.

Addresses have the form ``nion-autoem+tls://host:port?sha256=<fingerprint>``
(TLS, the server's certificate pinned by its SHA-256 fingerprint),
``nion-autoem+tls://host:port`` (TLS, certificate checked against a CA) or
``nion-autoem://host:port`` (no TLS: loopback or an SSH tunnel only).
"""

from __future__ import annotations

import dataclasses
import re
import struct
import typing

import msgpack
from Pyro5 import errors
from Pyro5 import protocol
from Pyro5 import serializers

#: The one Pyro object a server offers.
OBJECT_ID = "nion_autoem.experiments"
#: Pyro5's id of the msgpack serializer, the only one the server accepts.
SERIALIZER_ID = 4
SERIALIZER = serializers.serializers_by_id[SERIALIZER_ID]
#: Largest connect handshake (a token MAC, a nonce and a name are about 300 bytes).
MAX_HANDSHAKE_BYTES = 4 * 1024
#: Largest request: commands and their parameters are small; nothing large is ever sent to the microscope.
MAX_REQUEST_BYTES = 64 * 1024
#: Largest reply a client accepts (products and live frames travel this way).
MAX_RESPONSE_BYTES = 512 * 1024 * 1024

HEADER_FORMAT = "!4sHBBHHII16sHH"  # Pyro5 protocol 502, see Pyro5.protocol
HEADER_SIZE = struct.calcsize(HEADER_FORMAT)
_REFUSED_FLAGS = {protocol.FLAGS_COMPRESSED: "compressed", protocol.FLAGS_BATCH: "batched", protocol.FLAGS_ONEWAY: "one-way",
                  protocol.FLAGS_KEEPSERIALIZED: "pass-through"}


@dataclasses.dataclass(frozen=True)
class Header:
    """The fixed part of a Pyro5 message, parsed and checked for shape."""

    raw: bytes
    type: int
    serializer_id: int
    flags: int
    seq: int
    data_size: int
    annotations_size: int

    @property
    def payload_size(self) -> int:
        return self.data_size + self.annotations_size


def parse_header(raw: bytes) -> Header:
    """Parse a Pyro5 message header; raises ``Pyro5.errors.ProtocolError`` for anything that is not one.

    Examples
    --------
    >>> header = parse_header(encode_message(protocol.MSG_PING, 7, b"ping")[:HEADER_SIZE])
    >>> header.type == protocol.MSG_PING, header.seq, header.data_size
    (True, 7, 4)
    """
    if len(raw) != HEADER_SIZE:
        raise errors.ProtocolError(f"a message header is {HEADER_SIZE} bytes, got {len(raw)}")
    tag, version, msgtype, serializer_id, flags, seq, data_size, annotations_size, _, _, magic = struct.unpack(HEADER_FORMAT, raw)
    if tag != b"PYRO" or version != protocol.PROTOCOL_VERSION or magic != 0x4DC5:
        raise errors.ProtocolError(f"not a Pyro5 protocol {protocol.PROTOCOL_VERSION} message (it starts with {raw[:8]!r})")
    return Header(raw, msgtype, serializer_id, flags, seq, data_size, annotations_size)


def refusal(header: Header, expected_types: typing.Collection[int], max_bytes: int) -> str | None:
    """Why a message must be refused unread (serializer, flags, type, size), or None if it may be read."""
    if header.type not in expected_types:
        return f"message type {header.type} is not expected here (expected {sorted(expected_types)})"
    if header.payload_size > max_bytes:
        return f"message of {header.payload_size} bytes is larger than the {max_bytes} bytes allowed"
    if header.type == protocol.MSG_PING:
        return None  # a ping carries nothing that is decoded
    if header.serializer_id != SERIALIZER_ID:
        name = next((s.__class__.__name__ for i, s in serializers.serializers_by_id.items() if i == header.serializer_id), f"id {header.serializer_id}")
        return f"serializer {name} is not accepted: this server speaks msgpack only"
    refused = [word for flag, word in _REFUSED_FLAGS.items() if header.flags & flag]
    if refused:
        return f"{' and '.join(refused)} messages are not accepted"
    return None


def read_message(receive: typing.Callable[[int], bytes], header: Header) -> protocol.ReceivingMessage:
    """Read the payload of a message whose header was accepted, annotations split off."""
    message = protocol.ReceivingMessage(header.raw)
    message.add_payload(bytes(receive(header.payload_size)))
    return message


def decode_plain(data: bytes | memoryview) -> typing.Any:
    """Decode msgpack with no extension types and no class hooks: only plain data can come out.

    Examples
    --------
    >>> decode_plain(msgpack.packb({"a": [1, 2.5, b"x"]}))
    {'a': [1, 2.5, b'x']}
    """
    def no_extensions(code: int, data: bytes) -> typing.Any:
        raise ValueError(f"msgpack extension type {code} is not accepted")

    return msgpack.unpackb(bytes(data), raw=False, ext_hook=no_extensions, strict_map_key=False)


def encode_message(msgtype: int, seq: int, data: bytes, *, flags: int = 0) -> bytes:
    """A complete Pyro5 message with msgpack payload ``data``."""
    return bytes(protocol.SendingMessage(msgtype, flags, seq, SERIALIZER_ID, data).data)


@dataclasses.dataclass(frozen=True)
class Address:
    """Where a server listens and how its identity is checked.

    Examples
    --------
    >>> a = parse_address("nion-autoem+tls://127.0.0.1:4711?sha256=" + "ab" * 32)
    >>> a.host, a.port, a.tls, a.fingerprint[:4]
    ('127.0.0.1', 4711, True, 'abab')
    >>> str(Address("127.0.0.1", 4711, tls=False))
    'nion-autoem://127.0.0.1:4711'
    """

    host: str
    port: int
    tls: bool = True
    fingerprint: str | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if not self.tls:
            return f"nion-autoem://{host}:{self.port}"
        return f"nion-autoem+tls://{host}:{self.port}" + (f"?sha256={self.fingerprint}" if self.fingerprint else "")


_ADDRESS = re.compile(r"^nion-autoem(?P<tls>\+tls)?://(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.\-]+)):(?P<port>\d{1,5})(?:\?sha256=(?P<fp>[0-9A-Fa-f]{64}))?$")


def parse_address(uri: str) -> Address:
    """Parse a server address; the error says what an address looks like."""
    if not isinstance(uri, str):
        raise TypeError(f"uri must be a string like 'nion-autoem+tls://127.0.0.1:4711?sha256=...', got {type(uri).__name__}")
    match = _ADDRESS.match(uri.strip())
    if match is None:
        raise ValueError(f"uri {uri!r} is not a nion-autoem address; the server prints one like "
                         "'nion-autoem+tls://127.0.0.1:4711?sha256=<64 hex digits>' (or 'nion-autoem://host:port' without TLS)")
    port = int(match["port"])
    if not 0 < port < 65536:
        raise ValueError(f"the port of {uri!r} must be 1 to 65535, got {port}")
    tls = bool(match["tls"])
    if match["fp"] and not tls:
        raise ValueError(f"{uri!r} pins a certificate but does not use TLS; use 'nion-autoem+tls://'")
    return Address(match["ip6"] or match["host"], port, tls, match["fp"].lower() if match["fp"] else None)
