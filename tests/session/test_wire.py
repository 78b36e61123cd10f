"""The network core's JSON codec (session/wire.py): every type it carries round-trips, and
anything else, from random bytes to a crafted tag, is one WireError and never an object."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from takeover.control.arbiter import OperatorEvent
from takeover.control.loop import LoopTiming
from takeover.hw.base import LinkHealth
from takeover.inputs.gamepad import GamepadStatus
from takeover.recorder.writer import RecorderAlert, WriterStats
from takeover.session import wire
from takeover.session.docking_lifecycle import DockingStatus
from takeover.session.operator import EpisodeState, ModelRef, OpenResult, SessionSnapshot
from takeover.types import (
    Command,
    CommandSource,
    FieldState,
    FieldStatus,
    HelpReason,
    HelpStatus,
    Mode,
    Observation,
    Odometry,
    Pose2D,
    StepRecord,
)

floats = st.floats(allow_nan=True, allow_infinity=True)
finite = st.floats(allow_nan=False, allow_infinity=False)
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
text = st.text(max_size=20)
paths = st.builds(Path, st.text(alphabet=st.characters(blacklist_characters="\x00"), min_size=1,
                                 max_size=30))
json_leaf = st.none() | st.booleans() | ints | floats | text
json_values = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)

commands = st.builds(Command, floats, floats)
odometry = st.builds(Odometry, floats, floats, floats, floats, floats)
poses = st.builds(Pose2D, floats, floats, floats)
observations = st.builds(
    Observation, ints, odometry,
    st.none() | arrays(np.uint8, st.tuples(st.integers(0, 6), st.integers(0, 6), st.just(3))),
    st.none() | arrays(np.float32, st.integers(0, 40)),
    floats, st.booleans(), st.booleans(), st.booleans(), st.none() | floats,
    st.none() | st.integers(0, 4), st.dictionaries(text, ints, max_size=3))
field_status = st.builds(FieldStatus, st.sampled_from(FieldState), floats, text)
help_status = st.builds(HelpStatus, st.booleans(), st.none() | st.sampled_from(HelpReason), floats,
                        floats, st.none() | ints)
records = st.builds(
    StepRecord, ints, ints, st.none() | observations, commands, st.sampled_from(CommandSource),
    st.sampled_from(Mode), st.none() | commands, st.none() | commands,
    st.none() | st.sampled_from([-1, 0, 1]), ints, ints, text, st.none() | field_status,
    st.none() | help_status)
health = st.builds(LinkHealth, st.booleans(), ints, ints, ints, floats, st.none() | floats, text,
                   st.dictionaries(text, floats, max_size=3))
episodes = st.builds(EpisodeState, st.booleans(), text, ints, floats, ints, ints, ints, text,
                     st.none() | paths, text, text)
alerts = st.builds(RecorderAlert, text, text, text, ints)
writer_stats = st.builds(WriterStats, text, st.none() | text, ints, ints, ints, ints, ints, ints,
                         ints, st.none() | paths, st.none() | alerts, floats, ints, floats)
models = st.builds(ModelRef, text, paths)
gamepads = st.builds(GamepadStatus, st.booleans(), st.booleans(), text, st.booleans(),
                     st.booleans(), st.booleans(), floats, floats, st.none() | floats, text)
docking = st.builds(DockingStatus, ints, ints, st.booleans(), st.booleans(), text, ints, text,
                    st.dictionaries(text, json_values, max_size=3),
                    text, st.booleans(), st.booleans(), text, text, text, floats)
snapshots = st.builds(
    SessionSnapshot, st.none() | records, st.sampled_from(Mode), text, health, episodes,
    st.none() | writer_stats, st.none() | models, ints,
    st.lists(st.tuples(floats, floats), max_size=5), st.lists(text, max_size=3),
    st.none() | gamepads, text, st.booleans(), st.lists(commands, max_size=3), st.booleans(),
    st.booleans(), docking)
timings = st.builds(LoopTiming, floats, st.none() | floats, st.none() | floats,
                    st.none() | floats, st.none() | floats, ints, ints, text)
open_results = st.builds(OpenResult, st.none() | poses, text)


def assert_round_trip(value: Any, hint: Any) -> Any:
    data = wire.encode(value)
    back = wire.decode(data, hint)
    assert type(back) is type(value)
    assert wire.encode(back) == data  # same bytes again: every field, NaN and arrays included
    return back


@settings(max_examples=60, deadline=None)
@given(snapshots)
def test_snapshots_round_trip(snap: SessionSnapshot) -> None:
    back = assert_round_trip(snap, SessionSnapshot)
    assert all(type(p) is tuple for p in back.trail)
    if snap.record is not None and snap.record.observation is not None:
        obs, got = snap.record.observation, back.record.observation
        for a, b in ((obs.image, got.image), (obs.scan_m, got.scan_m)):
            assert (a is None) == (b is None)
            if a is not None:
                assert b.dtype == a.dtype and b.shape == a.shape and b.flags.writeable
                np.testing.assert_array_equal(a, b)


@settings(max_examples=60, deadline=None)
@given(st.one_of(timings, open_results, models, episodes, poses, writer_stats))
def test_replies_round_trip(value: Any) -> None:
    assert_round_trip(value, type(value))


@settings(max_examples=60, deadline=None)
@given(st.builds(Command, finite, finite), st.builds(Pose2D, finite, finite, finite))
def test_finite_values_come_back_equal(command: Command, pose: Pose2D) -> None:
    assert wire.decode(wire.encode(command), Command) == command
    assert wire.decode(wire.encode([pose, None]), list[Pose2D | None]) == [pose, None]


def test_non_finite_floats_come_back_as_themselves() -> None:
    back = wire.decode(wire.encode([math.nan, math.inf, -math.inf, -0.0]))
    assert math.isnan(back[0]) and back[1:3] == [math.inf, -math.inf]
    assert math.copysign(1.0, back[3]) == -1.0


@pytest.mark.parametrize("member", [*Mode, *CommandSource, *FieldState, *HelpReason,
                                    *OperatorEvent])
def test_every_enum_member_round_trips(member: Any) -> None:
    assert wire.decode(wire.encode(member), type(member)) is member


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_are_a_wire_error_or_plain_json(data: bytes) -> None:
    try:
        value = wire.decode(data)
    except wire.WireError:
        return
    assert isinstance(value, type(None) | bool | int | float | str | list | dict)


tags = st.sampled_from(["$t", "$e", "$f", "$p", "$a", "$x", "n", "dt", "sh"])
hostile_leaf = json_leaf | st.sampled_from(list(wire.DATACLASSES) + list(wire.ENUMS)
                                           + ["os.system", "__class__", "nan", "uint8"])
hostile = st.recursive(hostile_leaf, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(tags | text, inner, max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(hostile)
def test_crafted_tags_build_only_registered_types(value: Any) -> None:
    try:
        data = json.dumps(value, allow_nan=False)
    except ValueError:
        return
    try:
        built = wire.decode(data)
    except wire.WireError:
        return
    allowed = (type(None), bool, int, float, str, list, dict, Path, np.ndarray,
               *wire.DATACLASSES.values(), *wire.ENUMS.values())

    def check(v: Any) -> None:
        assert isinstance(v, allowed), type(v)
        for item in (v.values() if isinstance(v, dict) else v if isinstance(v, list) else ()):
            check(item)

    check(built)


@pytest.mark.parametrize(("data", "hint", "words"), [
    ('{"$t": "Command", "v_mps": "1", "w_radps": 0}', Command, "a str is not float"),
    ('{"$t": "Command", "v_mps": true, "w_radps": 0}', Command, "a bool is not float"),
    ('{"$t": "EpisodeState", "steps": 1.5}', EpisodeState, "a float is not int"),
    ('{"$t": "Command", "v_mps": 0, "w_radps": 0, "x": 1}', Command, "no field 'x'"),
    ('{"$t": "Pose2D", "x_m": 0, "y_m": 0}', Pose2D, "missing its field 'yaw_rad'"),
    ('{"$t": "Popen", "args": ["sh"]}', Any, "unknown type 'Popen'"),
    ('{"$t": "Command", "$e": "Mode", "n": "AUTO"}', Any, "more than one tag"),
    ('{"$q": 1}', Any, "unknown tag '$q'"),
    ('{"$e": "Mode", "n": "__class__"}', Any, "is not a Mode"),
    ('{"$e": "Signals", "n": "SIGKILL"}', Any, "unknown enum"),
    ('{"$f": "1e400"}', Any, "$f is one of"),
    ('{"$p": 5}', Any, "$p is a path string"),
    ('[1, NaN]', Any, "NaN is not JSON"),
    ('{"$e": "Mode", "n": "AUTO"}', OperatorEvent, "a Mode is not OperatorEvent"),
    ('{"$a": "AAAA", "dt": "object", "sh": [1]}', Any, "dtype 'object'"),
    ('{"$a": "AAAA", "dt": "uint8", "sh": [3, -1]}', Any, "array shape"),
    ('{"$a": "AAAA", "dt": "uint8", "sh": [100000, 100000, 3]}', Any, "over the"),
    ('{"$a": "AAAA", "dt": "uint8", "sh": [4]}', Any, "needs 4"),
    ('{"$a": "!!!!", "dt": "uint8", "sh": [3]}', Any, "not base64"),
    ('{"$a": "AAAA", "dt": "uint8", "sh": [3], "x": 0}', Any, "unexpected key"),
    ('{"$t": "Observation", "t_ns": 0, "image": {"$a": "AAAA", "dt": "float32", "sh": [3]}}',
     Observation, "image"),
    ("[" * 100 + "]" * 100, Any, "nesting"),
    (b"\xff\xfe", Any, "not a JSON message"),
])
def test_malformed_messages_are_one_wire_error(data: str | bytes, hint: Any, words: str) -> None:
    with pytest.raises(wire.WireError, match=words.replace("$", r"\$").replace("(", r"\(")):
        wire.decode(data, hint)


def test_messages_over_the_size_limit_are_refused_before_parsing() -> None:
    with pytest.raises(wire.WireError, match="over the"):
        wire.decode(b" " * (wire.MAX_MESSAGE_BYTES + 1))
    with pytest.raises(wire.WireError, match="over the limit"):
        wire.encode(np.zeros(wire.MAX_ARRAY_BYTES + 1, np.uint8))


class NotCarried:
    pass


def test_dict_keys_that_look_like_tags_stay_keys() -> None:
    value = {"$t": "Command", "$e": [1.5], "plain": {"$a": None}}
    assert wire.decode(wire.encode(value)) == value


@pytest.mark.parametrize("value", [NotCarried(), {1, 2}, {1: "a"}, b"raw",
                                   np.zeros(2, dtype=object), print])
def test_encoding_refuses_what_the_protocol_does_not_carry(value: Any) -> None:
    with pytest.raises(wire.WireError):
        wire.encode(value)
