"""The router takes over aiortc at a few private names (signaling/media/rtp_glue.py).

If an aiortc upgrade moves any of them, forwarding would silently stop: these tests make
the upgrade fail loudly instead.
"""

import inspect

import pytest
from aiortc import RTCDtlsTransport, RTCRtpReceiver, RTCRtpSender


@pytest.mark.parametrize(
    ("cls", "name", "parameters"),
    [
        (RTCRtpReceiver, "receive", ["parameters"]),
        (RTCRtpReceiver, "_handle_rtp_packet", ["packet", "arrival_time_ms"]),
        (RTCRtpReceiver, "_handle_rtcp_packet", ["packet"]),
        (RTCRtpReceiver, "stop", []),
        (RTCRtpSender, "send", ["parameters"]),
        (RTCRtpSender, "_handle_rtcp_packet", ["packet"]),
        (RTCRtpSender, "stop", []),
        (RTCDtlsTransport, "_send_rtp", ["data"]),
        (RTCDtlsTransport, "_register_rtp_receiver", ["receiver", "parameters"]),
        (RTCDtlsTransport, "_register_rtp_sender", ["sender", "parameters"]),
        (RTCDtlsTransport, "_unregister_rtp_receiver", ["receiver"]),
        (RTCDtlsTransport, "_unregister_rtp_sender", ["sender"]),
    ],
)
def test_aiortc_takeover_points_exist(cls: type, name: str, parameters: list[str]) -> None:
    signature = inspect.signature(getattr(cls, name))  # AttributeError if it moved
    assert list(signature.parameters)[1:] == parameters


def test_receiver_and_sender_handlers_are_coroutines() -> None:
    # The transport awaits them; a plain function would be called and never run.
    assert inspect.iscoroutinefunction(RTCRtpReceiver._handle_rtp_packet)
    assert inspect.iscoroutinefunction(RTCRtpReceiver._handle_rtcp_packet)
    assert inspect.iscoroutinefunction(RTCRtpSender._handle_rtcp_packet)
    assert inspect.iscoroutinefunction(RTCDtlsTransport._send_rtp)
