"""Where the router takes over from aiortc's media pipeline, and nowhere else.

aiortc receives a track by reassembling frames in a jitter buffer and decoding them in a
thread, and sends one by encoding (or packetising) frames. An SFU wants neither: it
forwards RTP packets, rewriting SSRC, sequence and timestamp (docs/ARCHITECTURE.md, decision 1).
aiortc has no public API for that, so for each transceiver we keep aiortc's negotiation,
ICE, DTLS and SRTP, and replace the entry points that its RTCPeerConnection and its DTLS
transport call:

- `RTCRtpReceiver.receive(parameters)`: called once the m-line is negotiated; we register
  the receiver with the transport's RTP router ourselves and start no decoder thread.
- `RTCRtpReceiver._handle_rtp_packet` / `_handle_rtcp_packet`: called by the transport for
  each RTP/RTCP packet routed to this receiver.
- `RTCRtpSender.send(parameters)`: we register the sender for RTCP routing and start no
  encoder loop.
- `RTCRtpSender._handle_rtcp_packet`: RR, NACK, PLI, FIR and REMB from the subscriber.
- `RTCDtlsTransport._send_rtp(data)`: SRTP-protects and sends one serialized packet; the
  handlers call it as `owner.transport._send_rtp`, looked up per call because bundling
  swaps the transport after the transceiver is made.
- `stop()` on both, so closing the peer connection unregisters us.

Instance attributes shadow the methods, so nothing is patched globally. These names are
stable in aiortc 1.x; pyproject pins the minor version and tests/test_rtp_glue.py fails if
any of them moves.
"""

from __future__ import annotations

from typing import Protocol

from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpReceiveParameters, RTCRtpSendParameters
from aiortc.rtp import AnyRtcpPacket, RtpPacket


class InboundHandler(Protocol):
    """The router's side of a track a room publishes to the server."""

    def start(self, parameters: RTCRtpReceiveParameters) -> None: ...

    async def on_rtp(self, packet: RtpPacket, arrival_time_ms: int) -> None: ...

    async def on_rtcp(self, packet: AnyRtcpPacket) -> None: ...

    def stop(self) -> None: ...


class OutboundHandler(Protocol):
    """The router's side of a track the server sends to a room."""

    def start(self, parameters: RTCRtpSendParameters) -> None: ...

    async def on_rtcp(self, packet: AnyRtcpPacket) -> None: ...

    def stop(self) -> None: ...



def claim_receiver(receiver: RTCRtpReceiver, handler: InboundHandler) -> None:
    """Route this receiver's RTP and RTCP to `handler` instead of aiortc's decoder."""
    started = False

    async def receive(parameters: RTCRtpReceiveParameters) -> None:
        nonlocal started
        if started:  # renegotiation calls receive() again; parameters do not change
            return
        started = True
        receiver.transport._register_rtp_receiver(receiver, parameters)
        handler.start(parameters)

    async def stop() -> None:
        if started:
            receiver.transport._unregister_rtp_receiver(receiver)
        handler.stop()

    # method-assign: instance attributes shadow aiortc's methods, on purpose (see above)
    receiver.receive = receive  # type: ignore[method-assign]
    receiver._handle_rtp_packet = handler.on_rtp  # type: ignore[method-assign]
    receiver._handle_rtcp_packet = handler.on_rtcp  # type: ignore[method-assign]
    receiver.stop = stop  # type: ignore[method-assign]


def claim_sender(sender: RTCRtpSender, handler: OutboundHandler) -> None:
    """Let `handler` write this sender's RTP and answer its RTCP; aiortc sends nothing."""
    started = False

    async def send(parameters: RTCRtpSendParameters) -> None:
        nonlocal started
        if started:
            return
        started = True
        sender.transport._register_rtp_sender(sender, parameters)
        handler.start(parameters)

    async def stop() -> None:
        if started:
            sender.transport._unregister_rtp_sender(sender)
        handler.stop()

    # method-assign: as in claim_receiver
    sender.send = send  # type: ignore[method-assign]
    sender._handle_rtcp_packet = handler.on_rtcp  # type: ignore[method-assign]
    sender.stop = stop  # type: ignore[method-assign]

