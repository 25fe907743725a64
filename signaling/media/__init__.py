"""The media router: the server side of every room's peer connection.

A `Publication` takes one published track's RTP in and hands it, still encoded, to every
`TrackSink` (a room's subscriber leg, the recorder, the live broadcaster); keyframe requests
and bandwidth estimates flow back the other way. Nothing here knows about lessons, the
database or HTTP: `signaling.live` decides who is connected to what. See docs/ARCHITECTURE.md.
"""
