// The receiving-room page (听课教室) in a browser: the teacher large, the room on stage
// beside it when there is one, this room's own camera (published through the same protocol
// as a classroom box), a raise-hand button, the link quality, and automatic rejoin after a
// drop (protocol.js reconnects with the rejoin token; this page only shows it).
//
// A signed-in school account opens /room/7?classroom=12 (the home page's link): the page
// mints that receiving room's join token with the session. Without `?classroom=` it takes
// the user's own receiving room in the lesson (a device's classroom, a school's rooms)
// when there is one, or lists them to choose from when there are several. An agent-style link (`/room/7#token=JOIN`) still
// joins with that token alone (see live_entry.js).
//
// Tests read `window.tongbuRoom` (end of file) rather than scraping the DOM.

import { api, loadCatalogue, pageLang } from './api.js';
import { renderLessonHeader, renderLessonTimer, renderRecording } from './lesson_view.js';
import {
  closedLesson,
  entryRefusal,
  mintJoinToken,
  ownClassroomIds,
  rememberRejoinToken,
  takeFragmentToken,
} from './live_entry.js';
import { localTrack as ownTrack, openCamera as openOwnCamera, publishOf, publishing, renderLocalButtons, stopTracks } from './live_local.js';
import { attach, badge, countFrames, mediaSummary, playSound } from './live_media.js';
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
import { mountNav, withLang } from './nav.js';
import { STATUS, TongbuClient } from './protocol.js';
import { LinkMeter, describe, summarise } from './quality.js';
import { currentSession, requireSession } from './session.js';

const params = new URLSearchParams(window.location.search);
const lang = pageLang();
const lessonId = lessonIdFromPath('room');

let t = untranslated;
let client = null;
let session = null; // the signed-in session, or null (an agent-style link needs none)
let linkToken = null; // the join token of an agent-style link
let classroomId = null; // the receiving room this page is, once known
let local = null; // MediaStream of our camera and microphone, or null
let soundOn = true;
let lastStatus = { status: STATUS.IDLE };
let link = null;
const meter = new LinkMeter();
const mutedByTeacher = { audio: false, video: false };

// The two pictures this room receives; `classroomId` says whose picture a view shows now.
const views = {
  teacher: view('teacher'),
  stage: view('stage'),
};

function view(name) {
  const record = {
    name,
    root: $(`${name}-tile`),
    video: $(`${name}-video`),
    audio: $(`${name}-audio`),
    placeholder: $(`${name}-placeholder`),
    classroomId: null,
    videoTrack: null,
    audioTrack: null,
    frames: 0,
    width: 0,
    height: 0,
  };
  countFrames(record);
  return record;
}

// ------------------------------------------------------------------ i18n

async function loadMessages() {
  t = await loadCatalogue(lang);
  document.title = t('room.page_title', { title: t('room.title') });
}

function errorText(error) {
  return liveErrorText(t, error);
}

// ------------------------------------------------------------------ own camera

async function openCamera() {
  // The server caps a receiving room's video at 1 Mbit/s: 540p is plenty.
  local = await openOwnCamera(t, { width: 960, height: 540 });
}

function localTrack(kind) {
  return ownTrack(local, kind);
}

/** Mute by the teacher wins over the room's own buttons until the teacher lifts it. */
function applyTeacherMute(kind, muted) {
  if (mutedByTeacher[kind] === muted) return;
  mutedByTeacher[kind] = muted;
  const track = localTrack(kind);
  if (track) track.enabled = !muted;
  renderLocalControls();
}

function toggleLocal(kind) {
  const track = localTrack(kind);
  if (!track || mutedByTeacher[kind]) return;
  track.enabled = !track.enabled;
  renderLocalControls();
}

function renderLocalControls() {
  renderLocalButtons(t, local, mutedByTeacher);
  const badges = [];
  for (const kind of ['audio', 'video']) {
    if (mutedByTeacher[kind]) {
      badges.push(badge(t(kind === 'audio' ? 'badge.audio_muted' : 'badge.video_muted'), 'muted'));
    }
  }
  $('self-badges').replaceChildren(...badges);
  const notice = $('notice');
  const parts = [];
  if (mutedByTeacher.audio) parts.push(t('room.muted_audio'));
  if (mutedByTeacher.video) parts.push(t('room.muted_video'));
  notice.hidden = parts.length === 0;
  notice.textContent = parts.join(' ');
}

// ------------------------------------------------------------------ lesson and media

function me() {
  const id = client?.joined?.you?.classroom_id;
  return (client?.lessonState?.rooms ?? []).find((r) => r.classroom_id === id) ?? null;
}

function renderLessonState() {
  const state = client?.lessonState;
  if (!state) return;
  const rooms = state.rooms;
  const mine = me();
  const main = rooms.find((r) => r.role === 'main');
  $('teacher-name').textContent = main ? `${main.school_name} · ${main.name}` : t('role.main');
  views.teacher.root.classList.toggle('offline', !main?.connected);

  const stageId = state.stage_classroom_id;
  const staged = rooms.find((r) => r.classroom_id === stageId);
  const selfOnStage = stageId != null && stageId === mine?.classroom_id;
  views.stage.root.hidden = !staged || selfOnStage;
  $('stage-name').textContent = staged ? `${staged.school_name} · ${staged.name}` : '';
  document.body.classList.toggle('self-on-stage', selfOnStage);
  document.body.classList.toggle('has-stage', Boolean(staged) && !selfOnStage);

  const hand = $('hand');
  const raised = Boolean(mine?.hand_raised);
  hand.setAttribute('aria-pressed', String(raised));
  hand.textContent = selfOnStage ? t('room.on_stage') : t(raised ? 'room.lower_hand' : 'room.raise_hand');
  hand.disabled = selfOnStage;
  hand.classList.toggle('raised', raised);

  if (mine) {
    applyTeacherMute('audio', mine.audio_muted);
    applyTeacherMute('video', mine.video_muted);
  }
  const online = rooms.filter((r) => r.connected).length;
  $('presence').textContent = t('presence', { online, total: rooms.length });
  showLessonState(t, state.state);
  renderPlaceholders();
}

function renderMedia(receivers) {
  // Map by mid through the latest slots: the staged room's m-lines carry another room's
  // media after a `slots` message, with the same MediaStreamTrack.
  const mainId = client?.lessonState?.rooms?.find((r) => r.role === 'main')?.classroom_id ?? null;
  const stageId = client?.lessonState?.stage_classroom_id ?? null;
  const wanted = { teacher: {}, stage: {} };
  for (const r of receivers) {
    if (r.classroomId == null || !r.track) continue;
    const isTeacher = mainId != null ? r.classroomId === mainId : r.classroomId !== stageId;
    const target = isTeacher ? wanted.teacher : wanted.stage;
    target[r.kind] = r.track;
    target.classroomId = r.classroomId;
  }
  for (const [name, media] of Object.entries(wanted)) {
    const v = views[name];
    v.classroomId = media.classroomId ?? null;
    attach(v, 'video', media.video ?? null, { mark: false });
    attach(v, 'audio', media.audio ?? null, { mark: false });
  }
  renderPlaceholders();
  applySound();
}

function renderPlaceholders() {
  for (const v of Object.values(views)) v.placeholder.hidden = Boolean(v.videoTrack) && v.frames > 0;
}

function applySound() {
  playSound(Object.values(views), soundOn, () => {
    soundOn = false; // autoplay with sound needs a gesture here: offer the button
    renderSoundButton();
  });
  renderSoundButton();
}

function renderSoundButton() {
  showSoundButton(t, soundOn);
}

async function renderQuality() {
  if (!client?.pc) return;
  const sample = await meter.sample(client.pc);
  link = summarise(Object.keys(sample.byMid), sample);
  const node = $('quality');
  node.hidden = !link.level;
  if (!link.level) return;
  node.className = `badge quality quality-${link.level}`;
  node.textContent = `${t('quality.label')}：${t(`quality.${link.level}`)}`;
  node.title = describe(link);
}

function toggleHand() {
  const mine = me();
  if (!client || !mine) return;
  if (mine.hand_raised) client.lowerHand();
  else client.raiseHand();
}

// ------------------------------------------------------------------ header, timer, status

function renderLesson(joined) {
  renderLessonHeader(t, lang, joined, 'room.page_title');
}

function renderTimer() {
  renderLessonTimer(t, client);
}

function renderStatus() {
  if (!client) return; // before joining, the entry steps own the status line
  const { status } = lastStatus;
  const text = statusText(t, lastStatus, {
    connecting: () => (client?.connections ? t('room.status.rejoining') : t('status.connecting')),
    joined: () => (views.teacher.frames > 0 ? t('room.status.playing') : t('room.status.joined')),
    refused: 'live.status.refused',
    describe: errorText,
  });
  setStatus(text, status);
  document.body.classList.toggle('lesson-ended', status === STATUS.ENDED);
  if (status === STATUS.ENDED) {
    $('hand').disabled = true;
    showTimerEnded(t);
    stopTracks(local);
  }
}

// ------------------------------------------------------------------ test and debug hooks

const summary = (v) => ({
  classroomId: v.classroomId,
  ...mediaSummary(v),
  visible: !v.root.hidden,
});

window.tongbuRoom = {
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
  /** The receiving room this page is (session mode), once chosen. */
  get classroomId() {
    return classroomId ?? client?.joined?.you?.classroom_id ?? null;
  },
  get status() {
    return client?.status ?? STATUS.IDLE;
  },
  get handRaised() {
    return Boolean(me()?.hand_raised);
  },
  get mutedByTeacher() {
    return { ...mutedByTeacher };
  },
  get publishing() {
    return publishing(local);
  },
  get link() {
    return link;
  },
  teacher: () => summary(views.teacher),
  stage: () => summary(views.stage),
  async stats() {
    const tracks = await receivedTracks(client);
    return {
      status: this.status,
      teacher: summary(views.teacher),
      stage: summary(views.stage),
      stageClassroomId: client?.lessonState?.stage_classroom_id ?? null,
      connections: client?.connections ?? 0,
      link,
      tracks,
    };
  },
};

// ------------------------------------------------------------------ start

// ------------------------------------------------------------------ entry

/** A refusal or a closed lesson, said in the status line; the page goes no further. */
function stopWith({ status, text }) {
  setStatus(text, status);
  $('self-placeholder').textContent = '';
  $('hand').disabled = true;
  stopTracks(local);
  document.body.classList.toggle('lesson-ended', status === 'ended');
}

/**
 * Which receiving room this page is: `?classroom=`, else the user's only one in the
 * lesson. Resolves to a classroom id, or null after drawing the chooser (several) or
 * a refusal (none, or a `?classroom=` that is not a receiving room of the lesson).
 */
async function chooseClassroom(lesson) {
  const receiving = lesson.rooms.filter((r) => r.role === 'receiving');
  const asked = params.get('classroom');
  if (asked !== null) {
    const room = receiving.find((r) => String(r.classroom_id) === asked);
    if (room) return room.classroom_id;
    const main = lesson.rooms.some((r) => r.role === 'main' && String(r.classroom_id) === asked);
    stopWith({
      status: main ? 'wrong_role' : 'unknown_room',
      text: t(main ? 'live.entry.wrong_role' : 'live.entry.unknown_room'),
    });
    return null;
  }
  const own = await ownClassroomIds(session.user);
  const mine = own === null ? receiving : receiving.filter((r) => own.has(r.classroom_id));
  if (mine.length === 1) {
    // Into the address bar, so a reload or a bookmark comes back to the same room.
    const query = new URLSearchParams(window.location.search);
    query.set('classroom', String(mine[0].classroom_id));
    history.replaceState(null, '', `${window.location.pathname}?${query}`);
    return mine[0].classroom_id;
  }
  if (mine.length === 0) {
    stopWith({ status: 'forbidden', text: t('live.entry.no_room') });
    return null;
  }
  showChooser(mine);
  return null;
}

function showChooser(rooms) {
  const list = $('room-choices');
  list.replaceChildren(
    ...rooms.map((room) => {
      const item = document.createElement('li');
      const link = document.createElement('a');
      link.className = 'button-link';
      link.href = withLang(`/room/${lessonId}?classroom=${room.classroom_id}`);
      link.dataset.classroomId = String(room.classroom_id);
      link.textContent = `${room.school_name} · ${room.name}`;
      item.append(link);
      return item;
    }),
  );
  $('room-chooser').hidden = false;
  document.body.classList.add('choosing');
  setStatus(t('room.choose.status', { count: rooms.length }), 'choose');
  $('self-placeholder').textContent = '';
}

async function mintRoomToken() {
  return (await mintJoinToken(lessonId, 'receiving', classroomId)).token;
}

function join(token, { fromLink }) {
  const publish = publishOf(local);
  client = new TongbuClient({
    token,
    lessonId,
    role: 'receiving',
    client: { name: 'tongbu-room', version: '1' },
    publish,
    // Signed in: a token that expires while the room waits for the lesson is renewed.
    renewToken: fromLink ? null : mintRoomToken,
  });
  client.addEventListener('status', (e) => {
    lastStatus = e.detail;
    renderStatus();
    renderRecording(t, lang, client);
  });
  client.addEventListener('joined', (e) => {
    if (fromLink) rememberRejoinToken('room', lessonId, e.detail.joined.rejoin_token);
    renderLesson(e.detail.joined);
    renderTimer();
  });
  client.addEventListener('lesson_state', () => {
    renderLessonState();
    renderRecording(t, lang, client);
    renderMedia(client.receivers());
  });
  client.addEventListener('media', (e) => renderMedia(e.detail.receivers));
  client.addEventListener('mute_request', (e) => applyTeacherMute(e.detail.kind, e.detail.muted));
  client.addEventListener('error', (e) => console.warn('tongbu:', e.detail.error.code, e.detail.error.message));
  client.start();
}

// ------------------------------------------------------------------ start

async function main() {
  await loadMessages();
  renderLocalControls();
  linkToken = takeFragmentToken('room', lessonId);
  // A link carries its own way in; without one the page needs a signed-in user.
  session = linkToken ? await currentSession().catch(() => null) : await requireSession();
  if (!linkToken && !session) return; // on the way to the login page
  await mountNav(t, { session, beforeSignOut: () => client?.close() });

  $('hand').addEventListener('click', toggleHand);
  $('mic').addEventListener('click', () => toggleLocal('audio'));
  $('cam').addEventListener('click', () => toggleLocal('video'));
  $('sound').addEventListener('click', () => {
    soundOn = !soundOn;
    applySound();
  });
  document.addEventListener('keydown', (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey || event.repeat) return;
    if (event.target.closest?.('input, textarea, select')) return;
    if (event.key.toLowerCase() === 'h') toggleHand();
  });
  setInterval(() => {
    renderPlaceholders();
    renderStatus();
    renderTimer();
  }, 1000);
  setInterval(() => renderQuality().catch(() => {}), 2000);

  let token = linkToken;
  if (!linkToken) {
    try {
      const lesson = await api.get(`/lessons/${lessonId}`);
      renderLessonHeader(t, lang, { lesson, you: { name: t('room.title') } }, 'room.page_title');
      const closed = closedLesson(t, lesson);
      if (closed) return stopWith(closed);
      classroomId = await chooseClassroom(lesson);
      if (classroomId == null) return;
      const room = lesson.rooms.find((r) => r.classroom_id === classroomId);
      renderLessonHeader(t, lang, { lesson, you: room }, 'room.page_title');
      token = await mintRoomToken();
    } catch (error) {
      return stopWith(entryRefusal(t, error, lessonId));
    }
  }
  await openCamera(); // without a camera the room still watches and raises its hand
  renderLocalControls();
  join(token, { fromLink: Boolean(linkToken) });
}
start(main);
