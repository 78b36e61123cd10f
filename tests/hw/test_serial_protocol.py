"""The serial protocol codec: known vectors, round trips, and property tests on hostile input.

Each property example carries several inputs (chunks, frames); `_budget.count` adds them up and
the run prints the total for tests/hw (at least 100k).
"""

from __future__ import annotations

import binascii
import struct

import pytest
from _budget import FAST, count
from hypothesis import given, settings
from hypothesis import strategies as st

from takeover.hw.serial import protocol as sp


def test_crc_is_crc16_ibm3740_with_its_check_value() -> None:
    assert sp.crc16(b"123456789") == sp.CRC16_CHECK == 0x29B1
    assert sp.crc16(b"") == 0xFFFF
    assert sp.crc16(b"123456789") == binascii.crc_hqx(b"123456789", 0xFFFF)


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [  # Cheshire & Baker's canonical examples (as on Wikipedia)
        (b"\x00", b"\x01\x01"),
        (b"\x00\x00", b"\x01\x01\x01"),
        (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
        (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
        (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
        (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
        (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255))),
        (bytes(range(0, 255)), b"\x01\xff" + bytes(range(1, 255))),
        (bytes(range(1, 256)), b"\xff" + bytes(range(1, 255)) + b"\x02\xff"),
        (bytes(range(2, 256)) + b"\x00", b"\xff" + bytes(range(2, 256)) + b"\x01\x01"),
        (bytes(range(3, 256)) + b"\x00\x01", b"\xfe" + bytes(range(3, 256)) + b"\x02\x01"),
    ],
)
def test_cobs_matches_the_canonical_examples(raw: bytes, encoded: bytes) -> None:
    assert sp.cobs_encode(raw) == encoded
    assert sp.cobs_decode(encoded) == raw


ALL_MESSAGES: list[sp.Message] = [
    sp.Hello(1, 1, 0xDEADBEEF), sp.CmdVel(-350, 1200), sp.Heartbeat(7), sp.SetEstop(1),
    sp.SimReset(42), sp.SimGetDockPose(),
    sp.HelloAck(1, 9, 0x93, 250, 50, 10, b"base"),
    sp.State(1, -2, 3, -4, 5, -6, 700, 0x13, 9, 1480, 1), sp.StateV1(1, -2, 3, -4, 5, -6, 700, 0x13, 9),
    sp.Scan(1, 600, 508, tuple(range(92))), sp.HeartbeatAck(1, 2),
    sp.Error(3, 2, b"send HELLO first"), sp.SimDockPose(3, 6804, 2238, 3141593),
    sp.SimImage(1, 2, 4, 1, 2, 0, bytes(range(12))),
]


@pytest.mark.parametrize("message", ALL_MESSAGES, ids=lambda m: m.MSG_ID.name)
def test_every_message_round_trips_through_a_frame(message: sp.Message) -> None:
    wire = sp.encode_message(message, 513)
    assert wire.endswith(b"\x00") and b"\x00" not in wire[:-1]
    frames = list(sp.FrameDecoder().feed(wire))
    assert len(frames) == 1 and frames[0].seq == 513 and frames[0].msg_id == message.MSG_ID
    assert sp.parse_message(frames[0]) == message


def test_a_version_1_state_still_decodes_and_a_version_2_one_carries_the_charge() -> None:
    """Version 2 appended the battery's current and power_supply_status to STATE; a base that
    speaks version 1 (or a version-2 base answering a version-1 host) sends the old layout."""
    v2 = sp.State(1, -2, 3, -4, 5, -6, 700, 0x13, 9, -812, 2)
    assert len(v2.pack()) == 31 and len(v2.v1().pack()) == 26
    assert v2.pack()[:26] == v2.v1().pack()  # appended: the old fields where they were
    (old,) = sp.FrameDecoder().feed(sp.encode_message(v2.v1(), 3))
    assert sp.parse_message(old) == sp.StateV1(1, -2, 3, -4, 5, -6, 700, 0x13, 9)
    assert sp.State().current_ma == sp.CURRENT_UNKNOWN_MA
    assert sp.to_i32(-1e12, 1000) > sp.CURRENT_UNKNOWN_MA  # a measured current never reads unknown


def test_every_message_id_has_a_class_and_sim_only_ids_are_marked() -> None:
    assert set(sp.MESSAGE_TYPES) == set(sp.MsgId)
    sim_only = {m for m in sp.MsgId if sp.is_sim_only(m)}
    assert sim_only == {m for m in sp.MsgId if m.name.startswith("SIM_")}
    assert all(sp.is_from_base(m) == (m >= 0x80) for m in sp.MsgId)


def test_bad_payload_lengths_are_protocol_errors() -> None:
    for cls in sp.MESSAGE_TYPES.values():
        with pytest.raises(sp.ProtocolError):
            cls.unpack(b"\x01" * 1023)
    with pytest.raises(sp.ProtocolError):
        sp.Scan.unpack(struct.pack("<HHHH", 1, 10, 8, 4) + bytes(8))  # past total
    with pytest.raises(sp.ProtocolError):
        sp.encode_frame(1, 0, bytes(sp.MAX_PAYLOAD + 1))


def test_fixed_point_conversion_saturates_and_never_sends_nan() -> None:
    assert sp.to_i16(0.35, 1000) == 350
    assert sp.to_i16(1e9, 1000) == 32767 and sp.to_i16(-1e9, 1000) == -32767
    assert sp.to_i16(float("nan"), 1000) == 0
    assert sp.to_i16(float("inf"), 1000) == 32767
    assert sp.to_i32(-3.5, 1e6) == -3_500_000


def test_sequence_counter_counts_gaps_and_resyncs_on_restart() -> None:
    counter = sp.SequenceCounter()
    for seq in (5, 6, 9, 10):  # 7 and 8 lost
        counter.observe(seq)
    counter.observe(0xFFFE)  # a jump of more than half the range: a restart, not a loss
    for seq in (0xFFFF, 0, 2):  # wraps around; 1 lost
        counter.observe(seq)
    assert (counter.lost, counter.resyncs) == (3, 1)
    counter.observe(1)  # backwards: a restarted sender
    assert (counter.lost, counter.resyncs) == (3, 2)


# --- properties -------------------------------------------------------------------------------


@pytest.mark.slow
@settings(FAST, max_examples=9_000)
@given(st.lists(st.binary(max_size=600), min_size=1, max_size=12))
def test_random_bytes_never_raise_and_are_accounted_for(chunks: list[bytes]) -> None:
    count("random_bytes", len(chunks))
    decoder = sp.FrameDecoder()
    frames = [f for chunk in chunks for f in decoder.feed(chunk)]
    stats = decoder.stats
    delimiters = sum(chunk.count(0) for chunk in chunks)
    assert len(frames) == stats.frames_ok
    assert stats.frames_ok + stats.crc_errors + stats.cobs_errors + stats.short_frames <= delimiters
    # and a good frame after the garbage still gets through
    after = list(decoder.feed(b"\x00" + sp.encode_message(sp.CmdVel(1, 2), 3)))
    assert [sp.parse_message(f) for f in after] == [sp.CmdVel(1, 2)]


@pytest.mark.slow
@settings(FAST, max_examples=3_000)
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 0xFFFF), st.binary(max_size=400)),
                min_size=1, max_size=6),
       st.binary(min_size=sp.MAX_PAYLOAD - 8, max_size=sp.MAX_PAYLOAD))
def test_any_frame_round_trips(frames: list[tuple[int, int, bytes]], big: bytes) -> None:
    frames = [*frames, (0x82, 1, big)]
    count("frame_round_trip", len(frames))
    stream = b""
    for msg_id, seq, payload in frames:
        wire = sp.encode_frame(msg_id, seq, payload)
        assert len(wire) <= sp.MAX_ENCODED + 1 and b"\x00" not in wire[:-1]
        assert sp.decode_frame(wire[:-1]) == sp.Frame(msg_id, seq, payload)
        stream += wire
    assert list(sp.FrameDecoder().feed(stream)) == [sp.Frame(*f) for f in frames]


@pytest.mark.slow
@settings(FAST, max_examples=3_000)
@given(st.lists(st.tuples(st.binary(max_size=200), st.integers(0, 10_000), st.integers(1, 255)),
                min_size=1, max_size=5))
def test_corrupted_frames_are_rejected_and_the_stream_recovers(
        cases: list[tuple[bytes, int, int]]) -> None:
    count("corrupted", len(cases))
    decoder = sp.FrameDecoder()
    for payload, where, flip in cases:
        wire = bytearray(sp.encode_frame(0x82, 77, payload))
        index = where % (len(wire) - 1)
        wire[index] ^= flip
        bad_before = decoder.stats.frames_bad
        frames = list(decoder.feed(bytes(wire)))
        # A byte changed inside the body is always caught by the CRC; a changed COBS code
        # byte leaves a body that is short, malformed or fails the CRC; a byte that became
        # 0x00 splits the frame into bad pieces.
        assert all(f != sp.Frame(0x82, 77, payload) for f in frames)
        assert decoder.stats.frames_bad > bad_before
        good = sp.encode_message(sp.State(), 1)
        assert len(list(decoder.feed(b"\x00" + good))) == 1


@settings(FAST, max_examples=2_000)
@given(st.lists(st.tuples(st.binary(max_size=300), st.integers(0, 10_000)), min_size=1,
                max_size=5))
def test_truncated_frames_are_rejected(cases: list[tuple[bytes, int]]) -> None:
    count("truncated", len(cases))
    decoder = sp.FrameDecoder()
    for n, (payload, where) in enumerate(cases, start=1):
        wire = sp.encode_frame(0x83, 5, payload)
        cut = 1 + where % (len(wire) - 2)
        assert list(decoder.feed(wire[:cut] + b"\x00")) == []
        assert decoder.stats.frames_bad == n


@settings(FAST, max_examples=500)
@given(st.integers(sp.MAX_ENCODED + 1, 4 * sp.MAX_ENCODED), st.integers(1, 255))
def test_oversized_frames_are_dropped_with_bounded_memory(length: int, fill: int) -> None:
    count("oversized", 1)
    decoder = sp.FrameDecoder()
    assert list(decoder.feed(bytes([fill]) * length + b"\x00")) == []
    assert decoder.stats.oversized == 1 and len(decoder._buffer) == 0
    assert len(list(decoder.feed(sp.encode_message(sp.Heartbeat(1), 0)))) == 1


@settings(FAST, max_examples=500)
@given(st.lists(st.binary(max_size=1100), max_size=8), st.integers(1, 64))
def test_chunked_delivery_gives_the_same_frames(chunks: list[bytes], step: int) -> None:
    count("chunked", len(chunks))
    stream = b"".join(sp.encode_frame(0x82, i, c[: sp.MAX_PAYLOAD]) for i, c in enumerate(chunks))
    whole = list(sp.FrameDecoder().feed(stream))
    decoder = sp.FrameDecoder()
    pieces = [stream[i : i + step] for i in range(0, len(stream), step)]
    split = [f for piece in pieces for f in decoder.feed(piece)]
    assert split == whole and len(whole) == len(chunks)
