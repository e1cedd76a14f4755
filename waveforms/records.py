"""The TFRecord format of waveforms datasets, written and framed without importing TensorFlow.

One record = one segment of one song as a `tf.train.Example` with the features below. The Example protobuf and the
TFRecord framing (length, masked CRC32C, data, masked CRC32C) are encoded here by hand so conversion workers stay free of
the 5-second TensorFlow import and the bytes are fully determined by the input (same input -> byte-identical shards).
`parse_example` is the TensorFlow side, used inside tf.data.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import google_crc32c

FORMAT = "waveforms/tfrecord-v1"
ENCODING = "mu-law-256"

# feature name -> kind; the contract between convert (writer) and dataset (reader)
FEATURES = {
    "audio": "bytes",  # raw uint8 mu-law codes, one byte per sample
    "song_id": "bytes",
    "genre": "bytes",
    "genre_id": "int64",
    "sample_rate": "int64",
    "offset": "int64",  # index of the segment's first sample within the song
}


class RecordError(ValueError):
    """A TFRecord file is corrupt (bad length or CRC) or truncated."""


@dataclass(frozen=True)
class Segment:
    audio: bytes
    song_id: str
    genre: str
    genre_id: int
    sample_rate: int
    offset: int


# --- protobuf encoding (just the subset tf.train.Example needs) ---


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 two's complement, as protobuf encodes negative int64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _feature(kind: str, value) -> bytes:
    if kind == "bytes":
        data = value.encode() if isinstance(value, str) else bytes(value)
        return _field(1, _field(1, data))  # Feature.bytes_list -> BytesList.value
    if kind == "int64":
        return _field(3, _field(1, _varint(int(value))))  # Feature.int64_list -> packed Int64List.value
    raise ValueError(f"unknown feature kind {kind!r}")


def encode_example(segment: Segment) -> bytes:
    """Serialise a Segment as tf.train.Example bytes (features in FEATURES order, so output is deterministic)."""
    entries = b"".join(
        _field(1, _field(1, name.encode()) + _field(2, _feature(kind, getattr(segment, name))))
        for name, kind in FEATURES.items()
    )
    return _field(1, entries)  # Example.features -> Features.feature (map entries)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(field number, payload) of each length-delimited field; the Example subset uses no other wire type."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        if key & 7 != 2:
            raise RecordError(f"unexpected protobuf wire type {key & 7} in an Example")
        length, pos = _read_varint(data, pos)
        yield key >> 3, data[pos : pos + length]
        pos += length


def decode_example(serialized: bytes) -> Segment:
    """The inverse of encode_example, without TensorFlow (for readers outside tf.data: reports, checks)."""
    values: dict[str, object] = {}
    for _, features in _fields(serialized):
        for _, entry in _fields(features):
            name, feature = "", b""
            for number, payload in _fields(entry):
                if number == 1:
                    name = payload.decode()
                else:
                    feature = payload
            for kind_number, value_list in _fields(feature):
                for _, item in _fields(value_list):
                    if kind_number == 3:  # packed int64
                        item_value, _ = _read_varint(item, 0)
                        values[name] = item_value - (1 << 64) if item_value >= 1 << 63 else item_value
                    else:
                        values[name] = item
    missing = [name for name in FEATURES if name not in values]
    if missing:
        raise RecordError(f"example lacks features {missing}")
    text = {name: bytes(values[name]).decode() for name in ("song_id", "genre")}
    return Segment(
        bytes(values["audio"]),
        text["song_id"],
        text["genre"],
        int(values["genre_id"]),
        int(values["sample_rate"]),
        int(values["offset"]),
    )


# --- TFRecord framing ---


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    """One TFRecord frame: uint64 length, masked CRC of the length, data, masked CRC of the data."""
    length = struct.pack("<Q", len(record))
    return length + struct.pack("<I", _masked_crc(length)) + record + struct.pack("<I", _masked_crc(record))


def iter_records(stream: BinaryIO, *, verify: bool = True, name: str = "<stream>") -> Iterator[bytes]:
    """Yield the records of a TFRecord stream, checking both CRCs; raise RecordError on corruption or truncation."""
    index = 0
    while True:
        header = stream.read(12)
        if not header:
            return
        if len(header) < 12:
            raise RecordError(f"{name}: truncated header of record {index}")
        length_bytes, length_crc = header[:8], struct.unpack("<I", header[8:])[0]
        if verify and _masked_crc(length_bytes) != length_crc:
            raise RecordError(f"{name}: length CRC mismatch at record {index}")
        (length,) = struct.unpack("<Q", length_bytes)
        body = stream.read(length + 4)
        if len(body) < length + 4:
            raise RecordError(f"{name}: record {index} truncated ({len(body)} of {length + 4} bytes)")
        data = body[:length]
        if verify and _masked_crc(data) != struct.unpack("<I", body[length:])[0]:
            raise RecordError(f"{name}: data CRC mismatch at record {index}")
        yield data
        index += 1


def count_records(stream: BinaryIO, *, name: str = "<stream>") -> int:
    """Records in a seekable TFRecord stream, from the length headers alone (a seek per record, no data read);
    raise RecordError if a header is damaged or the last record is cut short."""
    end = stream.seek(0, 2)
    position, index = stream.seek(0), 0
    while position < end:
        header = stream.read(12)
        if len(header) < 12:
            raise RecordError(f"{name}: truncated header of record {index}")
        if _masked_crc(header[:8]) != struct.unpack("<I", header[8:])[0]:
            raise RecordError(f"{name}: length CRC mismatch at record {index}")
        position += 12 + struct.unpack("<Q", header[:8])[0] + 4
        if position > end:
            raise RecordError(f"{name}: record {index} truncated (file ends {position - end} bytes early)")
        stream.seek(position)
        index += 1
    return index


# --- TensorFlow side ---


def parse_example(serialized):
    """tf.data map function: Example bytes -> dict of tensors; `audio` becomes uint8 codes of shape (samples,)."""
    import tensorflow as tf

    spec = {
        name: tf.io.FixedLenFeature([], tf.string if kind == "bytes" else tf.int64) for name, kind in FEATURES.items()
    }
    features = tf.io.parse_single_example(serialized, spec)
    features["audio"] = tf.io.decode_raw(features["audio"], tf.uint8)
    return features
