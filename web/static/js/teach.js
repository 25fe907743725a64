// The teacher console (主讲教室): the main room's own camera, published through the same
// protocol as a classroom box, and its one to four receiving rooms as tiles, each with its
// link quality and the teacher's controls (stage, answer a raised hand, mute), plus the
// lesson timer and "end the lesson". protocol.js does all the protocol work.
//
// A signed-in teacher (or the main school's admin) opens /teach/7: the page reads the
// lesson, mints the main room's join token with the session, and offers "开始上课" until the
// lesson is live (open/start through the API, then join); "下课" ends it for every room.
// An agent-style link (`/teach/7#token=JOIN`) still joins with that token alone (see
// live_entry.js); ending the lesson then needs a signed-in user who may run it.
//
// Tests read `window.tongbuConsole` (end of file) rather than scraping the DOM.

import { ApiError, api, loadCatalogue, pageLang } from './api.js';
import { renderLessonHeader, renderLessonTimer, renderRecording } from './lesson_view.js';
import {
  closedLesson,
  entryRefusal,
  mayRunLessons,
  mintJoinToken,
  rememberRejoinToken,
  takeFragmentToken,
} from './live_entry.js';
import { localTrack, openCamera as openOwnCamera, publishOf, publishing, renderLocalButtons, stopTracks } from './live_local.js';
import { attach, makeTile as makeRoomTile, mediaByRoom, mediaSummary, playSound, roomBadges } from './live_media.js';
import {
  $,
  errorText as liveErrorText,
  lessonIdFromPath,
  receivedTracks,
  renderSoundButton as showSoundButton,
  setStatus,
  showLessonState,
  showTimerEnded,
  start,
  statusText,
  untranslated,
} from './live_page.js';
import { mountNav } from './nav.js';
import { STATUS, TongbuClient } from './protocol.js';
import { LinkMeter, describe, summarise } from './quality.js';
import { currentSession, requireSession } from './session.js';

const lang = pageLang();
const lessonId = lessonIdFromPath('teach');

const roomsNode = $('rooms');

let t = untranslated;
let client = null;
let session = null; // the signed-in session, or null (an agent-style link needs none)
let lesson = null; // the lesson as GET /lessons/{id} gave it (session mode)
let linkToken = null; // the join token of an agent-style link
let local = null; // MediaStream of our camera and microphone, or null
let soundOn = true;
let lastStatus = { status: STATUS.IDLE };
let endArmedUntil = 0;
let selectedId = null; // the tile the keyboard shortcuts act on
const meter = new LinkMeter();
const tiles = new Map(); // classroom_id -> tile record

// ------------------------------------------------------------------ i18n

async function loadMessages() {
  t = await loadCatalogue(lang);
  document.title = t('teach.page_title', { title: t('teach.title') });
}

function errorText(error) {
  return liveErrorText(t, error);
}

// ------------------------------------------------------------------ own camera

async function openCamera() {
  local = await openOwnCamera(t, { width: 1280, height: 720 });
  return local;
}

function toggleLocal(kind) {
  const track = localTrack(local, kind);
  if (!track) return;
  track.enabled = !track.enabled;
  renderLocalControls();
}

function renderLocalControls() {
  renderLocalButtons(t, local);
}

// ------------------------------------------------------------------ room tiles

function button(action, onClick) {
  const node = document.createElement('button');
  node.type = 'button';
  node.dataset.action = action;
  node.addEventListener('click', onClick);
  return node;
}

/** A receiving room's tile (live_media.js) with its link quality and the teacher's buttons. */
function makeTile(classroomId) {
  const tile = makeRoomTile(classroomId, { className: 'tile room-tile offline' });
  tile.root.tabIndex = -1; // focusable by the 1–4 shortcuts, not in the Tab order itself
  const quality = document.createElement('span');
  quality.className = 'badge quality';
  quality.hidden = true;
  tile.badges.after(quality);
  tile.quality = quality;
  tile.link = null;
  const actions = document.createElement('div');
  actions.className = 'room-actions';
  tile.stageButton = button('stage', () => toggleStage(tile));
  tile.answerButton = button('answer', () => answerHand(tile));
  tile.audioButton = button('mute-audio', () => toggleMute(tile, 'audio'));
  tile.videoButton = button('mute-video', () => toggleMute(tile, 'video'));
  actions.append(tile.stageButton, tile.answerButton, tile.audioButton, tile.videoButton);
  tile.root.append(actions);
  tile.root.addEventListener('focusin', () => {
    selectedId = classroomId;
  });
  return tile;
}

function receivingRooms() {
  return (client?.lessonState?.rooms ?? []).filter((r) => r.role === 'receiving');
}

function renderRooms() {
  const state = client?.lessonState;
  if (!state) return;
  const rooms = receivingRooms();
  const stage = state.stage_classroom_id;
  const seen = new Set();
  for (const room of rooms) {
    seen.add(room.classroom_id);
    let tile = tiles.get(room.classroom_id);
    if (!tile) {
      tile = makeTile(room.classroom_id);
      tiles.set(room.classroom_id, tile);
    }
    roomsNode.append(tile.root); // roster order
    tile.room = room;
    const onStage = stage === room.classroom_id;
    tile.root.classList.toggle('on-stage', onStage);
    tile.root.classList.toggle('offline', !room.connected);
    tile.root.classList.toggle('hand-raised', room.hand_raised);
    tile.name.textContent = room.name || t('tile.unnamed', { id: room.classroom_id });
    tile.school.textContent = room.school_name;
    tile.badges.replaceChildren(...roomBadges(t, room, onStage));

    const label = room.school_name || tile.name.textContent;
    tile.stageButton.textContent = t(onStage ? 'teach.unstage' : 'teach.stage');
    tile.stageButton.setAttribute('aria-pressed', String(onStage));
    tile.stageButton.setAttribute('aria-label', `${tile.stageButton.textContent} · ${label}`);
    tile.answerButton.textContent = t('teach.answer');
    tile.answerButton.hidden = !room.hand_raised;
    tile.answerButton.setAttribute('aria-label', `${t('teach.answer')} · ${label}`);
    tile.audioButton.textContent = t(room.audio_muted ? 'teach.unmute_audio' : 'teach.mute_audio');
    tile.audioButton.setAttribute('aria-pressed', String(room.audio_muted));
    tile.videoButton.textContent = t(room.video_muted ? 'teach.unmute_video' : 'teach.mute_video');
    tile.videoButton.setAttribute('aria-pressed', String(room.video_muted));
  }
  for (const [id, tile] of tiles) {
    if (!seen.has(id)) {
      tile.root.remove();
      tiles.delete(id);
    }
  }
  roomsNode.dataset.count = String(rooms.length);

  const hands = rooms.filter((r) => r.hand_raised);
  const pill = $('hands');
  pill.hidden = hands.length === 0;
  pill.textContent = t('teach.hands', { count: hands.length });
  const staged = rooms.find((r) => r.classroom_id === stage);
  $('stage-line').textContent = staged
    ? t('teach.on_stage', { room: staged.school_name || staged.name })
    : t('teach.no_stage');
  const online = rooms.filter((r) => r.connected).length;
  $('presence').textContent = t('teach.presence', { online, total: rooms.length });
  showLessonState(t, state.state);
  renderPlaceholders();
  applySound();
}

function renderMedia(receivers) {
  const byRoom = mediaByRoom(receivers);
  for (const tile of tiles.values()) {
    const media = byRoom.get(tile.classroomId) ?? { mids: [] };
    tile.mids = media.mids;
    attach(tile, 'video', media.video ?? null);
    attach(tile, 'audio', media.audio ?? null);
  }
  renderPlaceholders();
  applySound();
}

function renderPlaceholders() {
  for (const tile of tiles.values()) {
    const connected = tile.room ? tile.room.connected : true;
    let text = connected ? t('tile.waiting') : t('tile.offline');
    if (connected && tile.room?.video_muted) text = t('badge.video_muted');
    tile.placeholder.textContent = text;
    tile.placeholder.hidden = Boolean(tile.videoTrack) && tile.frames > 0 && !tile.room?.video_muted;
  }
}

async function renderQuality() {
  if (!client?.pc) return;
  const sample = await meter.sample(client.pc);
  for (const tile of tiles.values()) {
    const link = tile.mids?.length ? summarise(tile.mids, sample) : null;
    tile.link = link;
    const node = tile.quality;
    node.hidden = !link?.level;
    if (!link?.level) continue;
    node.className = `badge quality quality-${link.level}`;
    node.textContent = t(`quality.${link.level}`);
    node.title = describe(link);
    node.setAttribute('aria-label', `${t('quality.label')}: ${t(`quality.${link.level}`)} (${describe(link)})`);
  }
}

// ------------------------------------------------------------------ teacher's actions

function toggleStage(tile) {
  if (!client) return;
  const staged = client.lessonState?.stage_classroom_id === tile.classroomId;
  client.stage(staged ? null : tile.classroomId);
}

function answerHand(tile) {
  if (client && tile.room?.hand_raised) client.lowerHand(tile.classroomId);
}

function toggleMute(tile, kind) {
  if (!client || !tile.room) return;
  const muted = kind === 'audio' ? tile.room.audio_muted : tile.room.video_muted;
  client.muteRequest(tile.classroomId, kind, !muted);
}

/** Two presses within five seconds: ending a lesson for every room must not be a slip. */
async function endLesson() {
  const node = $('end-lesson');
  const now = performance.now();
  if (now > endArmedUntil) {
    endArmedUntil = now + 5000;
    node.textContent = t('teach.end_confirm');
    node.dataset.armed = 'true';
    setTimeout(() => {
      if (performance.now() >= endArmedUntil && node.dataset.armed === 'true') {
        node.dataset.armed = 'false';
        node.textContent = t('teach.end');
      }
    }, 5100);
    return;
  }
  endArmedUntil = 0;
  node.disabled = true;
  node.dataset.armed = 'false';
  node.textContent = t('teach.ending');
  try {
    await api.post(`/lessons/${lessonId}/end`, { reason: 'ended_by_teacher' });
    // The server now sends `lesson_ended` on every socket, ours included.
  } catch (error) {
    node.disabled = false;
    node.textContent = t('teach.end');
    showNotice(t('teach.end_failed', { reason: refusalText(error) }));
  }
}

function refusalText(error) {
  return error instanceof ApiError ? entryRefusal(t, error, lessonId).text : String(error?.message ?? error);
}

let noticeUntil = 0;

/** A refusal or failure, shown in the status line for a few seconds. */
function showNotice(text) {
  noticeUntil = performance.now() + 6000;
  setStatus(text, 'error');
}

// ------------------------------------------------------------------ sound

/** The teacher hears every receiving room (a room the teacher mutes is not forwarded). */
function applySound() {
  playSound(tiles.values(), soundOn, () => {
    // Autoplay with sound needs a gesture on this browser: offer the button.
    soundOn = false;
    renderSoundButton();
  });
  renderSoundButton();
}

function renderSoundButton() {
  showSoundButton(t, soundOn);
}

// ------------------------------------------------------------------ header, timer, status

function renderLesson(joined) {
  renderLessonHeader(t, lang, joined, 'teach.page_title');
}

function renderTimer() {
  renderLessonTimer(t, client);
}

function renderStatus() {
  if (!client) return; // before joining, the entry steps own the status line
  const { status } = lastStatus;
  const text = statusText(t, lastStatus, {
    connecting: () => t('status.connecting'),
    joined() {
      const playing = [...tiles.values()].filter((tile) => tile.videoTrack && tile.frames > 0).length;
      return t('teach.status.joined', { playing, total: tiles.size });
    },
    refused: 'live.status.refused',
    describe: errorText,
  });
  if (status === STATUS.JOINED && performance.now() < noticeUntil) return; // let the notice be read
  setStatus(text, status);
  document.body.classList.toggle('lesson-ended', status === STATUS.ENDED);
  if (status === STATUS.ENDED) {
    $('end-lesson').hidden = true;
    showTimerEnded(t);
    stopTracks(local); // the camera light goes off
  }
}

// ------------------------------------------------------------------ keyboard

/** 1–4 select a room; S stages it (or takes it off), A answers its hand, M mutes its sound. */
function onKey(event) {
  if (event.altKey || event.ctrlKey || event.metaKey) return;
  if (event.target.closest?.('input, textarea, select')) return;
  const ordered = [...roomsNode.querySelectorAll('figure.room-tile')];
  if (/^[1-4]$/.test(event.key)) {
    const node = ordered[Number(event.key) - 1];
    if (node) {
      selectedId = Number(node.dataset.classroomId);
      node.focus();
    }
    return;
  }
  const tile = tiles.get(selectedId);
  if (!tile) return;
  const key = event.key.toLowerCase();
  if (key === 's') toggleStage(tile);
  else if (key === 'a') answerHand(tile);
  else if (key === 'm') toggleMute(tile, 'audio');
}

// ------------------------------------------------------------------ test and debug hooks

function roomSummaries() {
  const stage = client?.lessonState?.stage_classroom_id ?? null;
  return [...tiles.values()].map((tile) => ({
    classroomId: tile.classroomId,
    name: tile.room?.name ?? null,
    schoolName: tile.room?.school_name ?? null,
    connected: tile.room?.connected ?? null,
    onStage: tile.classroomId === stage,
    handRaised: tile.room?.hand_raised ?? false,
    audioMuted: tile.room?.audio_muted ?? false,
    videoMuted: tile.room?.video_muted ?? false,
    ...mediaSummary(tile),
    link: tile.link,
  }));
}

window.tongbuConsole = {
  lang,
  lessonId,
  get client() {
    return client;
  },
  /** How the page got in: 'link' (a #token= link) or 'session'; null before it knows. */
  get entry() {
    if (linkToken) return 'link';
    return session ? 'session' : null;
  },
  get status() {
    return client?.status ?? STATUS.IDLE;
  },
  get publishing() {
    return publishing(local);
  },
  rooms: roomSummaries,
  async stats() {
    const tracks = await receivedTracks(client);
    return { status: this.status, rooms: roomSummaries(), tracks };
  },
};

// ------------------------------------------------------------------ entry

/** A refusal or a closed lesson, said in the status line; the page goes no further. */
function stopWith({ status, text }) {
  setStatus(text, status);
  $('start-lesson').hidden = true;
  $('self-placeholder').textContent = '';
  stopTracks(local);
  document.body.classList.toggle('lesson-ended', status === 'ended');
}

function mainRoom() {
  return lesson?.rooms.find((r) => r.role === 'main') ?? null;
}

async function mintMainToken() {
  return (await mintJoinToken(lessonId, 'main', mainRoom().classroom_id)).token;
}

/** Waiting for the teacher: the camera is on, the rooms are listed, "开始上课" is offered. */
function offerStart() {
  const receiving = lesson.rooms.filter((r) => r.role === 'receiving');
  setStatus(
    t('teach.status.ready', {
      state: t(`lesson.state.${lesson.state}`),
      rooms: receiving.map((r) => r.school_name).join('、') || '—',
    }),
    'ready',
  );
  showLessonState(t, lesson.state);
  const button = $('start-lesson');
  button.hidden = false;
  button.focus();
}

/** scheduled → open → live through the API (audited as this teacher's), then join. */
async function startLesson() {
  const button = $('start-lesson');
  button.disabled = true;
  button.textContent = t('teach.starting');
  try {
    if (lesson.state === 'scheduled') lesson = await api.post(`/lessons/${lessonId}/open`);
    if (lesson.state === 'open') lesson = await api.post(`/lessons/${lessonId}/start`);
  } catch (error) {
    if (!(error instanceof ApiError && error.code === 'illegal_transition')) {
      button.disabled = false;
      button.textContent = t('teach.start');
      showNotice(t('teach.start_failed', { reason: refusalText(error) }));
      return;
    }
    // Started meanwhile (a classroom box, another tab) or ended: go by what it is now.
    try {
      lesson = await api.get(`/lessons/${lessonId}`);
    } catch (again) {
      stopWith(entryRefusal(t, again, lessonId));
      return;
    }
    const closed = closedLesson(t, lesson);
    if (closed) {
      stopWith(closed);
      return;
    }
  }
  button.hidden = true;
  try {
    join(await mintMainToken(), { fromLink: false });
  } catch (error) {
    stopWith(entryRefusal(t, error, lessonId));
  }
}

function join(token, { fromLink }) {
  const publish = publishOf(local);
  client = new TongbuClient({
    token,
    lessonId,
    role: 'main',
    client: { name: 'tongbu-teach', version: '1' },
    publish,
    // Signed in: a token the server calls expired is replaced by a fresh one.
    renewToken: fromLink ? null : mintMainToken,
  });
  client.addEventListener('status', (e) => {
    lastStatus = e.detail;
    renderStatus();
    renderRecording(t, lang, client);
  });
  client.addEventListener('joined', (e) => {
    if (fromLink) rememberRejoinToken('teach', lessonId, e.detail.joined.rejoin_token);
    renderLesson(e.detail.joined);
    renderTimer();
    $('end-lesson').hidden = !mayRunLessons(session?.user);
  });
  client.addEventListener('lesson_state', () => {
    renderRooms();
    renderRecording(t, lang, client);
    renderMedia(client.receivers());
  });
  client.addEventListener('media', (e) => renderMedia(e.detail.receivers));
  client.addEventListener('error', (e) => {
    const { error } = e.detail;
    console.warn('tongbu:', error.code, error.message);
    if (!error.fatal) showNotice(errorText(error));
  });
  client.start();
}

// ------------------------------------------------------------------ start

async function main() {
  await loadMessages();
  renderLocalControls();
  linkToken = takeFragmentToken('teach', lessonId);
  // A link carries its own way in; without one the page needs a signed-in user.
  session = linkToken ? await currentSession().catch(() => null) : await requireSession();
  if (!linkToken && !session) return; // on the way to the login page
  await mountNav(t, { session, beforeSignOut: () => client?.close() });

  $('end-lesson').addEventListener('click', endLesson);
  $('start-lesson').addEventListener('click', startLesson);
  $('sound').addEventListener('click', () => {
    soundOn = !soundOn;
    applySound();
  });
  $('mic').addEventListener('click', () => toggleLocal('audio'));
  $('cam').addEventListener('click', () => toggleLocal('video'));
  document.addEventListener('keydown', onKey);
  setInterval(() => {
    renderPlaceholders();
    renderStatus();
    renderTimer();
  }, 1000);
  setInterval(() => renderQuality().catch(() => {}), 2000);

  if (linkToken) {
    // Publish what we can: without a camera the teacher still sees and runs the lesson.
    await openCamera();
    renderLocalControls();
    join(linkToken, { fromLink: true });
    return;
  }
  let token;
  try {
    lesson = await api.get(`/lessons/${lessonId}`);
    renderLesson({ lesson, you: { name: mainRoom()?.name ?? '' } });
    const closed = closedLesson(t, lesson);
    if (closed) return stopWith(closed);
    token = await mintMainToken(); // also proves, before the camera opens, that we may
  } catch (error) {
    return stopWith(entryRefusal(t, error, lessonId));
  }
  await openCamera();
  renderLocalControls();
  // A classroom device cannot open or start lessons: its join makes an open lesson live,
  // and it waits (retrying) for one that is not open yet, as a classroom box does.
  if (lesson.state === 'live' || !mayRunLessons(session.user)) join(token, { fromLink: false });
  else offerStart();
}

start(main);
