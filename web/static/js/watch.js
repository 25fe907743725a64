// The live lesson viewer: every room of a lesson, the main room large, receiving rooms as
// tiles. All protocol work is in protocol.js; this file only draws what the client reports.
//
// A signed-in reviewer, admin or school staff member opens /watch/7 and the page mints a
// watch token with the session; a link with `#token=` (the demo's WATCH_URL, the admin
// overview's) joins with that token alone (see live_entry.js).
//
// Tests read `window.tongbuViewer` (see the end of this file) rather than scraping the DOM.

import { loadCatalogue, pageLang, teacherTitle } from './api.js';
import { entryRefusal, mintJoinToken, takeFragmentToken } from './live_entry.js';
import { attach, badge, makeTile as makeRoomTile, mediaByRoom, mediaSummary, roomBadges } from './live_media.js';
import {
  $,
  errorText as liveErrorText,
  lessonIdFromPath,
  receivedTracks,
  renderSoundButton,
  setStatus,
  showLessonState,
  start,
  statusText,
  untranslated,
} from './live_page.js';
import { mountNav } from './nav.js';
import { STATUS, TongbuClient } from './protocol.js';
import { currentSession, requireSession } from './session.js';

const lang = pageLang();
const lessonId = lessonIdFromPath('watch');

const grid = $('grid');

let t = untranslated;
let client = null;
let session = null;
let linkToken = null;
let soundOn = false;
let lastStatus = { status: STATUS.IDLE };
const tiles = new Map(); // classroom_id -> tile record (see makeTile)

// ------------------------------------------------------------------ i18n

function errorText(error) {
  return liveErrorText(t, error, ['error']);
}

// ------------------------------------------------------------------ tiles

/** A room's tile (live_media.js), its sound muted until the sound button. */
function makeTile(classroomId) {
  const tile = makeRoomTile(classroomId, { className: 'tile offline', audioMuted: true });
  const { video } = tile;
  video.addEventListener('resize', () => {
    tile.width = video.videoWidth;
    tile.height = video.videoHeight;
  });
  return tile;
}

function tileFor(classroomId) {
  let tile = tiles.get(classroomId);
  if (!tile) {
    tile = makeTile(classroomId);
    tiles.set(classroomId, tile);
    grid.append(tile.root);
  }
  return tile;
}

function renderRooms() {
  const state = client?.lessonState;
  const rooms = state?.rooms ?? [];
  // The main room first (CSS makes it large), then receiving rooms in roster order.
  const ordered = [...rooms].sort((a, b) => (a.role === 'main' ? 0 : 1) - (b.role === 'main' ? 0 : 1));
  for (const room of ordered) {
    const tile = tileFor(room.classroom_id);
    tile.room = room;
    const onStage = state.stage_classroom_id === room.classroom_id;
    tile.root.dataset.role = room.role;
    tile.video.dataset.role = room.role;
    tile.root.classList.toggle('main', room.role === 'main');
    tile.root.classList.toggle('on-stage', onStage);
    tile.root.classList.toggle('offline', !room.connected);
    tile.root.classList.toggle('hand-raised', room.hand_raised);
    tile.name.textContent = room.name || t('tile.unnamed', { id: room.classroom_id });
    tile.school.textContent = room.school_name;
    tile.badges.replaceChildren(badge(t(`role.${room.role}`), room.role), ...roomBadges(t, room, onStage));
    grid.append(tile.root); // re-appending keeps DOM order equal to the sorted order
  }
  const online = rooms.filter((r) => r.connected).length;
  $('presence').textContent = rooms.length ? t('presence', { online, total: rooms.length }) : '';
  if (state) showLessonState(t, state.state);
  renderPlaceholders();
  applySound();
}

function renderMedia(receivers) {
  const byRoom = mediaByRoom(receivers);
  for (const classroomId of byRoom.keys()) tileFor(classroomId);
  for (const tile of tiles.values()) {
    const media = byRoom.get(tile.classroomId) ?? {};
    attach(tile, 'video', media.video ?? null);
    attach(tile, 'audio', media.audio ?? null);
  }
  renderPlaceholders();
  applySound();
}

function renderPlaceholders() {
  for (const tile of tiles.values()) {
    const connected = tile.room ? tile.room.connected : true;
    tile.placeholder.textContent = connected ? t('tile.waiting') : t('tile.offline');
    tile.placeholder.hidden = Boolean(tile.videoTrack) && tile.frames > 0;
  }
}

// ------------------------------------------------------------------ sound

/**
 * A watcher receives every room's sound; playing all five at once is noise. Like a
 * receiving room, we let the teacher and the room on stage be heard.
 */
function applySound() {
  const stage = client?.lessonState?.stage_classroom_id ?? null;
  for (const tile of tiles.values()) {
    const audible = soundOn && (tile.room?.role === 'main' || tile.classroomId === stage);
    tile.audio.muted = !audible;
    if (audible && tile.audioTrack) tile.audio.play().catch(() => {});
  }
  renderSoundButton(t, soundOn);
}

// ------------------------------------------------------------------ header and status

function renderLesson(joined) {
  const lesson = joined.lesson;
  const title = lesson.title || t('lesson.untitled', { subject: lesson.subject, grade: lesson.grade });
  $('lesson-title').textContent = title;
  document.title = t('page.title', { title });
  const time = (iso) => new Date(iso).toLocaleTimeString(lang, { hour: '2-digit', minute: '2-digit' });
  $('lesson-meta').textContent = t('lesson.meta', {
    teacher: teacherTitle(t, lesson.teacher_name),
    start: time(lesson.planned_start),
    end: time(lesson.planned_end),
  });
}

function playingCount() {
  let count = 0;
  for (const tile of tiles.values()) if (tile.videoTrack && tile.frames > 0) count += 1;
  return count;
}

function renderStatus() {
  const text = statusText(t, lastStatus, {
    connecting: () => t('status.connecting'),
    joined() {
      const count = playingCount();
      return count ? t('status.playing', { count }) : t('status.joined');
    },
    refused: 'status.refused',
    describe: errorText,
  });
  setStatus(text, lastStatus.status);
}

// ------------------------------------------------------------------ test and debug hooks

function roomSummaries() {
  const stage = client?.lessonState?.stage_classroom_id ?? null;
  return [...tiles.values()].map((tile) => ({
    classroomId: tile.classroomId,
    name: tile.room?.name ?? null,
    schoolName: tile.room?.school_name ?? null,
    role: tile.room?.role ?? null,
    connected: tile.room?.connected ?? null,
    onStage: tile.classroomId === stage,
    handRaised: tile.room?.hand_raised ?? false,
    ...mediaSummary(tile),
  }));
}

/** Average colour of a region (fractions of the frame) of a room's current picture. */
function sampleColour(classroomId, region = { x: 0.25, y: 0.25, w: 0.5, h: 0.5 }) {
  const tile = tiles.get(classroomId);
  const video = tile?.video;
  if (!video || !video.videoWidth) return null;
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(video, 0, 0);
  const x = Math.floor(region.x * canvas.width);
  const y = Math.floor(region.y * canvas.height);
  const w = Math.max(1, Math.floor(region.w * canvas.width));
  const h = Math.max(1, Math.floor(region.h * canvas.height));
  const { data } = ctx.getImageData(x, y, w, h);
  const sum = [0, 0, 0];
  for (let i = 0; i < data.length; i += 4) {
    sum[0] += data[i];
    sum[1] += data[i + 1];
    sum[2] += data[i + 2];
  }
  const n = data.length / 4;
  return { r: Math.round(sum[0] / n), g: Math.round(sum[1] / n), b: Math.round(sum[2] / n) };
}

window.tongbuViewer = {
  lang,
  lessonId,
  /** How the page got in: 'link' (a #token= link) or 'session'; null before it knows. */
  get entry() {
    if (linkToken) return 'link';
    return session ? 'session' : null;
  },
  get client() {
    return client;
  },
  get status() {
    return client?.status ?? STATUS.IDLE;
  },
  rooms: roomSummaries,
  sampleColour,
  /** Rooms plus per received m-line figures (framesDecoded from getStats). */
  async stats() {
    const tracks = await receivedTracks(client, { trackId: true });
    return {
      status: this.status,
      stageClassroomId: client?.lessonState?.stage_classroom_id ?? null,
      rooms: roomSummaries(),
      tracks,
    };
  },
};

// ------------------------------------------------------------------ start

/** A refusal, said in the status line; the page goes no further. */
function stopWith({ status, text }) {
  setStatus(text, status);
}

async function mintWatchToken() {
  return (await mintJoinToken(lessonId, 'watch')).token;
}

async function main() {
  t = await loadCatalogue(lang);
  $('sound').addEventListener('click', () => {
    soundOn = !soundOn;
    applySound();
  });
  linkToken = takeFragmentToken('watch', lessonId);
  // A link carries its own way in; without one the page needs a signed-in user.
  session = linkToken ? await currentSession().catch(() => null) : await requireSession();
  if (!linkToken && !session) return; // on the way to the login page
  await mountNav(t, { session, beforeSignOut: () => client?.close() });
  let token = linkToken;
  if (!token) {
    try {
      token = await mintWatchToken();
    } catch (error) {
      stopWith(entryRefusal(t, error, lessonId));
      return;
    }
  }
  client = new TongbuClient({
    token,
    lessonId,
    role: 'watch',
    client: { name: 'tongbu-watch', version: '1' },
    renewToken: linkToken ? null : mintWatchToken,
  });
  client.addEventListener('status', (e) => {
    lastStatus = e.detail;
    renderStatus();
  });
  client.addEventListener('joined', (e) => renderLesson(e.detail.joined));
  client.addEventListener('lesson_state', renderRooms);
  client.addEventListener('media', (e) => renderMedia(e.detail.receivers));
  client.addEventListener('error', (e) => console.warn('tongbu:', e.detail.error.code, e.detail.error.message));
  client.start();
  // Frames arrive without events of their own: refresh the status line and placeholders.
  setInterval(() => {
    renderPlaceholders();
    renderStatus();
  }, 1000);
}

start(main);
