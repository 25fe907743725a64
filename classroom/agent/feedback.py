"""Keyframe requests and bandwidth estimates from the far end, for our own encoder.

aiortc's RTCRtpSender answers PLI/FIR and REMB by poking *its* encoder. We hand it
pre-encoded packets, so its encoder only packetises and those pokes go nowhere. Here we
wrap the instance's `_handle_rtcp_packet` (the method aiortc's DTLS transport calls for
every RTCP packet routed to this sender, looked up per call) and pass the two signals on.
The original handler still runs, so RTT, NACK retransmission and stats keep working.

`_handle_rtcp_packet` is aiortc internals; pyproject pins aiortc's minor version and
tests/test_agent_media.py fails if the hook moves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiortc import RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    unpack_remb_fci,
)

logger = logging.getLogger(__name__)

HOOK = "_handle_rtcp_packet"


def watch_sender_feedback(
    sender: RTCRtpSender,
    on_keyframe_request: Callable[[], None],
    on_bitrate: Callable[[int], None],
) -> None:
    """Call `on_keyframe_request` on PLI/FIR and `on_bitrate(bps)` on REMB for this sender."""
    original = getattr(sender, HOOK, None)
    if original is None:
        raise RuntimeError(f"aiortc's RTCRtpSender has no {HOOK}; feedback cannot be watched")

    async def handle(packet: AnyRtcpPacket) -> None:
        await original(packet)
        if not isinstance(packet, RtcpPsfbPacket):
            return
        if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            on_keyframe_request()
        elif packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                return  # an application-layer feedback that is not REMB
            if sender._ssrc in ssrcs:
                on_bitrate(bitrate)

    setattr(sender, HOOK, handle)
