"""Error codes shared by the REST API and the signaling protocol.

One catalogue, so a client writer learns one vocabulary and docs/protocol.md and the
OpenAPI document can both be generated from it.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    # transport and framing
    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    UNKNOWN_TYPE = "unknown_type"
    TOO_LARGE = "too_large"
    UNSUPPORTED_VERSION = "unsupported_version"
    RATE_LIMITED = "rate_limited"
    # session order
    NOT_JOINED = "not_joined"
    ALREADY_JOINED = "already_joined"
    STALE_ANSWER = "stale_answer"
    # join tokens
    TOKEN_INVALID = "token_invalid"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_WRONG_LESSON = "token_wrong_lesson"
    TOKEN_WRONG_ROLE = "token_wrong_role"
    TOKEN_REVOKED = "token_revoked"
    # lessons and rooms
    LESSON_NOT_FOUND = "lesson_not_found"
    LESSON_NOT_OPEN = "lesson_not_open"
    LESSON_ENDED = "lesson_ended"
    REPLACED = "replaced"
    FORBIDDEN = "forbidden"
    UNKNOWN_ROOM = "unknown_room"
    UNKNOWN_TRACK = "unknown_track"
    SDP_INVALID = "sdp_invalid"
    CODEC_UNSUPPORTED = "codec_unsupported"
    # REST
    UNAUTHORIZED = "unauthorized"
    ACCOUNT_LOCKED = "account_locked"
    CSRF_FAILED = "csrf_failed"
    NOT_FOUND = "not_found"
    INVALID_BODY = "invalid_body"
    CONFLICT = "conflict"
    ILLEGAL_TRANSITION = "illegal_transition"
    NOT_LIVE = "not_live"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    RANGE_NOT_SATISFIABLE = "range_not_satisfiable"
    STORAGE_MISSING = "storage_missing"
    INTERNAL = "internal"


DESCRIPTIONS: dict[ErrorCode, str] = {
    ErrorCode.BAD_JSON: "The frame was not valid UTF-8 JSON.",
    ErrorCode.BAD_MESSAGE: "The message does not match its schema; `message` names the field.",
    ErrorCode.UNKNOWN_TYPE: "The `type` is not a message of this protocol version.",
    ErrorCode.TOO_LARGE: "The frame exceeds the size limit (64 KiB); it was discarded.",
    ErrorCode.UNSUPPORTED_VERSION: "The `v` field names a protocol version the server lacks.",
    ErrorCode.RATE_LIMITED: "Too many messages; this one was dropped. A sustained flood "
    "closes the socket (close code 1008).",
    ErrorCode.NOT_JOINED: "Only `join` and `ping` are accepted before `joined`.",
    ErrorCode.ALREADY_JOINED: "`join` was sent twice on one socket.",
    ErrorCode.STALE_ANSWER: "The answer names an offer revision that is not outstanding.",
    ErrorCode.TOKEN_INVALID: "The join token is malformed or its signature does not verify.",
    ErrorCode.TOKEN_EXPIRED: "The join token has expired; ask for a new one.",
    ErrorCode.TOKEN_WRONG_LESSON: "The join token was minted for another lesson.",
    ErrorCode.TOKEN_WRONG_ROLE: "The join token's role does not match the role asked for "
    "or the classroom's place in the lesson.",
    ErrorCode.TOKEN_REVOKED: "The account the join token was minted for is disabled, or the "
    "device account now belongs to another classroom; only an enabled account's new token "
    "joins.",
    ErrorCode.LESSON_NOT_FOUND: "No lesson with this id.",
    ErrorCode.LESSON_NOT_OPEN: "The lesson is not open yet.",
    ErrorCode.LESSON_ENDED: "The lesson has ended or was cancelled.",
    ErrorCode.REPLACED: "The same classroom joined again on another socket; this one closes.",
    ErrorCode.FORBIDDEN: "The joined role may not do this (for example staging from a "
    "receiving room).",
    ErrorCode.UNKNOWN_ROOM: "No classroom with this id is in the lesson.",
    ErrorCode.UNKNOWN_TRACK: "No published track with this id, or not one this role may receive.",
    ErrorCode.SDP_INVALID: "The SDP could not be applied.",
    ErrorCode.CODEC_UNSUPPORTED: "The client accepts none of the codecs offered.",
    ErrorCode.UNAUTHORIZED: "Missing or invalid credentials.",
    ErrorCode.ACCOUNT_LOCKED: "Sign-in refused, whatever the password: the account is locked "
    "for a while after repeated wrong passwords (or until an administrator unlocks it).",
    ErrorCode.CSRF_FAILED: "A request signed in by the session cookie changed state without "
    "the session's X-CSRF-Token header, with a wrong one, or from another origin.",
    ErrorCode.NOT_FOUND: "No such resource.",
    ErrorCode.INVALID_BODY: "The request body does not match its schema; `field` names where.",
    ErrorCode.CONFLICT: "The request conflicts with existing data.",
    ErrorCode.ILLEGAL_TRANSITION: "The lesson cannot move from its current state to that one.",
    ErrorCode.NOT_LIVE: "The lesson has no live session on this server right now.",
    ErrorCode.METHOD_NOT_ALLOWED: "The path exists but not with this HTTP method.",
    ErrorCode.RANGE_NOT_SATISFIABLE: "The Range header is malformed or lies beyond the file; "
    "Content-Range gives the file's size.",
    ErrorCode.STORAGE_MISSING: "The catalogue lists the file but the storage has no object for it.",
    ErrorCode.INTERNAL: "An unexpected server error; it was logged.",
}
