// The room's own camera and microphone on the pages that publish (teach.js, room.js): the
// camera opened into the self view, the mic and camera buttons, and what is published.

import { $ } from './live_page.js';

/**
 * Open the camera and microphone at `width`×`height` into the self view (#self-video).
 * Resolves to the MediaStream, or null (said in #self-placeholder) when refused.
 */
export async function openCamera(t, { width, height }) {
  const placeholder = $('self-placeholder');
  let local;
  try {
    local = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true },
      video: { width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: 25, max: 30 } },
    });
  } catch (error) {
    placeholder.textContent = t('live.camera_failed', { reason: error.name || String(error) });
    placeholder.dataset.status = 'error';
    return null;
  }
  const video = $('self-video');
  video.srcObject = new MediaStream(local.getVideoTracks());
  video.play().catch(() => {});
  placeholder.hidden = true;
  return local;
}

export function localTrack(local, kind) {
  return local && (kind === 'audio' ? local.getAudioTracks()[0] : local.getVideoTracks()[0]);
}

/** The mic and camera buttons: on or off as the tracks are; `locked[kind]` disables one. */
export function renderLocalButtons(t, local, locked = {}) {
  for (const [id, kind, on, off] of [
    ['mic', 'audio', 'live.mic_on', 'live.mic_off'],
    ['cam', 'video', 'live.cam_on', 'live.cam_off'],
  ]) {
    const track = localTrack(local, kind);
    const node = $(id);
    const enabled = Boolean(track && track.enabled);
    node.disabled = !track || Boolean(locked[kind]);
    node.textContent = t(enabled ? on : off);
    node.setAttribute('aria-pressed', String(enabled));
  }
}

/** The tracks a TongbuClient publishes, or null without a camera. */
export function publishOf(local) {
  return local
    ? { audio: localTrack(local, 'audio') ?? undefined, video: localTrack(local, 'video') ?? undefined }
    : null;
}

/** For the test hooks: each published track's kind and whether it is on. */
export function publishing(local) {
  return (local?.getTracks() ?? []).map((track) => ({ kind: track.kind, enabled: track.enabled }));
}

/** Stop the camera and microphone (the camera light goes off). */
export function stopTracks(local) {
  for (const track of local?.getTracks() ?? []) track.stop();
}
