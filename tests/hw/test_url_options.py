"""One strict URL-option parser for every scheme: the same word means the same thing (or fails
with the same line) on sim://, serial and ws://."""

from __future__ import annotations

import pytest

from takeover.errors import UsageError
from takeover.hw.base import open_link
from takeover.hw.rosbridge.link import parse_rosbridge_url
from takeover.hw.serial.link import parse_serial_url
from takeover.hw.url_options import FALSE_WORDS, TRUE_WORDS, UrlOptions


@pytest.mark.parametrize("word", [*TRUE_WORDS, *FALSE_WORDS, "ON", "Off"])
def test_flags_read_alike_on_every_scheme(word: str) -> None:
    want = word.lower() in TRUE_WORDS
    assert parse_serial_url(f"serial:///dev/ttyUSB0?images={word}").sim_images is want
    if want:  # cbor on needs cbor2, which the dev install has
        assert parse_rosbridge_url(f"ws://robot:9090?cbor={word}").cbor is True
    else:
        assert parse_rosbridge_url(f"ws://robot:9090?cbor={word}").cbor is False
    assert open_link(f"sim://?fast={word}").lockstep is want


@pytest.mark.parametrize("url", ["serial:///dev/ttyUSB0?images=maybe", "ws://robot:9090?cbor=maybe",
                                 "sim://?fast=maybe"])
def test_a_word_that_is_not_yes_or_no_is_refused_everywhere(url: str) -> None:
    with pytest.raises(UsageError) as err:
        open_link(url)
    assert "is not a yes/no value" in str(err.value) and "\n" not in str(err.value)


def test_unknown_options_are_named_with_what_the_scheme_accepts() -> None:
    with pytest.raises(UsageError, match="unknown option 'colour'; sim:// accepts fast, height"):
        open_link("sim://?colour=red")
    with pytest.raises(UsageError, match="unknown option 'baud'; ws:// accepts"):
        open_link("ws://robot:9090?baud=9600")


def test_typed_reads_and_pass_through() -> None:
    opts = UrlOptions("socket://h:1?baud=9600&logging=debug&n=3&mode=b", ("baud", "n", "mode"),
                      "socket://")
    assert opts.number("baud", 1.0) == 9600.0 and opts.integer("n", 0, low=1, high=5) == 3
    assert opts.choice("mode", ("a", "b"), "a") == "b" and opts.others() == [("logging", "debug")]
    with pytest.raises(UsageError, match="must be between 4 and 5"):
        opts.integer("n", 0, low=4, high=5)
    # pyserial's own options travel on to pyserial for socket:// and friends
    assert parse_serial_url("socket://h:1?logging=debug").port == "socket://h:1?logging=debug"
