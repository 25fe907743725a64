"""Validation of inbound signaling frames: each kind of bad input gets its own code."""

import json

import pytest

from signaling import protocol
from signaling.errors import ErrorCode
from signaling.protocol import MAX_MESSAGE_BYTES, ProtocolError, decode_client_message


def refused(frame: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode_client_message(frame)
    return info.value


def test_valid_messages_decode_to_their_types() -> None:
    message = decode_client_message('{"type":"join","v":1,"id":"a1","token":"t","lesson_id":3}')
    assert isinstance(message, protocol.Join)
    assert (message.token, message.lesson_id, message.id) == ("t", 3, "a1")
    stage = decode_client_message('{"type":"stage","classroom_id":null}')
    assert isinstance(stage, protocol.Stage) and stage.classroom_id is None


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", ErrorCode.BAD_JSON),
        (b"\xff\xfe", ErrorCode.BAD_JSON),
        ("[1, 2]", ErrorCode.BAD_MESSAGE),
        ('{"type":"teleport","v":1}', ErrorCode.UNKNOWN_TYPE),
        ('{"v":1}', ErrorCode.UNKNOWN_TYPE),
        ('{"type":"ping","v":2,"t":1}', ErrorCode.UNSUPPORTED_VERSION),
        ('{"type":"join","v":1}', ErrorCode.BAD_MESSAGE),  # token missing
        ('{"type":"join","v":1,"token":"t","admin":true}', ErrorCode.BAD_MESSAGE),
        ('{"type":"mute_request","classroom_id":2,"kind":"smell","muted":true}',
         ErrorCode.BAD_MESSAGE),
        ('{"type":"stage","classroom_id":-4}', ErrorCode.BAD_MESSAGE),
    ],
)
def test_bad_frames_get_specific_codes(frame: str, code: ErrorCode) -> None:
    assert refused(frame).code == code


def test_error_refers_to_the_request_id_when_readable() -> None:
    error = refused('{"type":"teleport","id":"req-7"}')
    assert error.ref == "req-7"


def test_oversized_frames_are_refused_before_parsing() -> None:
    frame = json.dumps({"type": "answer", "revision": 1, "sdp": "x" * MAX_MESSAGE_BYTES})
    error = refused(frame)
    assert error.code == ErrorCode.TOO_LARGE
    assert str(MAX_MESSAGE_BYTES) in error.message


def test_server_messages_round_trip() -> None:
    offer = protocol.Offer(
        revision=2,
        sdp="v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n",
        slots=[protocol.Slot(mid="2", kind="video", direction="subscribe",
                             track_id="3-video", classroom_id=3)],
    )
    decoded = protocol.decode_server_message(protocol.encode(offer))
    assert decoded == offer
