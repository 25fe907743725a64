// The pictures and sound of the live pages: a room's tile (<video>, <audio>, placeholder
// and caption), its badges, the received tracks grouped by the room they carry now, frame
// counting for the test hooks, and playing sound. teach.js and watch.js draw rooms as such
// tiles; room.js has two fixed views (the teacher, the room on stage) of the same shape.

/** Count presented frames (and the picture's size) on `record.video`, where supported. */
export function countFrames(record) {
  if (!('requestVideoFrameCallback' in HTMLVideoElement.prototype)) return;
  const step = (_now, meta) => {
    record.frames += 1;
    record.width = meta.width;
    record.height = meta.height;
    record.video.requestVideoFrameCallback(step);
  };
  record.video.requestVideoFrameCallback(step);
}

/**
 * A room's tile: <figure class=`className`> with the picture, the sound, a placeholder
 * and a caption (room name, school name, badges). `audioMuted`: the sound starts muted.
 */
export function makeTile(classroomId, { className, audioMuted = false }) {
  const root = document.createElement('figure');
  root.className = className;
  root.dataset.classroomId = String(classroomId);

  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;
  video.muted = true; // sound goes through the <audio> below, so video autoplay is never blocked
  video.dataset.classroomId = String(classroomId);
  video.dataset.kind = 'video';

  const audio = document.createElement('audio');
  audio.autoplay = true;
  audio.muted = audioMuted;
  audio.dataset.classroomId = String(classroomId);
  audio.dataset.kind = 'audio';

  const placeholder = document.createElement('div');
  placeholder.className = 'placeholder';

  const caption = document.createElement('figcaption');
  const name = document.createElement('span');
  name.className = 'room-name';
  const school = document.createElement('span');
  school.className = 'school-name';
  const badges = document.createElement('span');
  badges.className = 'badges';
  caption.append(name, school, badges);

  root.append(video, audio, placeholder, caption);
  const tile = {
    classroomId,
    root,
    video,
    audio,
    placeholder,
    name,
    school,
    badges,
    room: null,
    videoTrack: null,
    audioTrack: null,
    frames: 0, // frames presented, counted by requestVideoFrameCallback
    width: 0,
    height: 0,
  };
  countFrames(tile);
  return tile;
}

export function badge(text, kind) {
  const span = document.createElement('span');
  span.className = `badge badge-${kind}`;
  span.textContent = text;
  return span;
}

/** A room's state as badges: on stage, hand raised, offline, muted by the teacher. */
export function roomBadges(t, room, onStage) {
  const badges = [];
  if (onStage) badges.push(badge(t('badge.stage'), 'stage'));
  if (room.hand_raised) badges.push(badge(`✋ ${t('badge.hand')}`, 'hand'));
  if (!room.connected) badges.push(badge(t('badge.offline'), 'offline'));
  if (room.audio_muted) badges.push(badge(t('badge.audio_muted'), 'muted'));
  if (room.video_muted) badges.push(badge(t('badge.video_muted'), 'muted'));
  return badges;
}

/**
 * What the server sends, by source room: classroom id -> {video, audio, mids}. The same
 * MediaStreamTrack may move to another room after a `slots` message (the server maps
 * m-lines to rooms by mid), so callers rebuild the mapping on every change.
 */
export function mediaByRoom(receivers) {
  const byRoom = new Map();
  for (const r of receivers) {
    if (r.classroomId == null || !r.track) continue;
    const entry = byRoom.get(r.classroomId) ?? { mids: [] };
    entry[r.kind] = r.track;
    entry.mids.push(r.mid);
    byRoom.set(r.classroomId, entry);
  }
  return byRoom;
}

/** Show `track` (or nothing) in a tile's <video> or <audio>; `mark`: a has-<kind> class on the tile. */
export function attach(tile, kind, track, { mark = true } = {}) {
  const field = kind === 'video' ? 'videoTrack' : 'audioTrack';
  if (tile[field] === track) return;
  tile[field] = track;
  const element = tile[kind];
  element.srcObject = track ? new MediaStream([track]) : null;
  if (mark) tile.root.classList.toggle(`has-${kind}`, Boolean(track));
  if (track) element.play().catch(() => {}); // audio may wait for the sound button
}

/**
 * Every tile's sound on or off. Autoplay with sound needs a gesture on some browsers:
 * `blocked()` is called when it is refused, so the page can offer the button.
 */
export function playSound(records, on, blocked) {
  for (const record of records) {
    record.audio.muted = !on;
    if (on && record.audioTrack) record.audio.play().catch(blocked);
  }
}

/** A tile's media for the test hooks. */
export function mediaSummary(record) {
  return {
    hasVideo: Boolean(record.videoTrack),
    hasAudio: Boolean(record.audioTrack),
    framesPresented: record.frames,
    width: record.width,
    height: record.height,
  };
}
