// The call page: reads the join link (?url=<signaling URL>&token=<join token>), opens the
// camera and microphone, shows the lobby (preview, name, devices, microphone and camera
// toggles; skipped with join=now), joins, and wires the controls (mute, camera, screen
// share, devices, chat, leave) to the call and the view. `window.conclave` exposes the call
// for debugging and for the end-to-end tests.

import { Call, State, tokenClaims } from './call.js';
import { explain, listDevices, loadChoice, openDevice, openLocalMedia, saveChoice } from './devices.js';
import { MicLevel, spoke } from './level.js';
import { View } from './view.js';

const $ = (selector) => document.querySelector(selector);
const $$ = (selector) => [...document.querySelectorAll(selector)];
const params = new URLSearchParams(location.search);
const view = new View(document.body);
const NAME_KEY = 'conclave.name';

function showJoinForm(problem) {
  $('#join-form').hidden = false;
  $('#join-url').value = params.get('url') ?? '';
  $('#join-token').value = params.get('token') ?? '';
  if (problem) $('#join-problem').textContent = problem;
}

/** Fills every device picker (the lobby's and the call's) with the devices and the choice. */
async function fillDevicePickers() {
  const devices = await listDevices();
  const choice = loadChoice();
  for (const select of $$('select[data-device]')) {
    const kind = select.dataset.device;
    select.replaceChildren();
    devices[kind].forEach((d, i) => {
      const option = document.createElement('option');
      option.value = d.deviceId;
      option.textContent = d.label || `${kind} ${i + 1}`;
      option.selected = d.deviceId === choice[kind];
      select.append(option);
    });
    select.disabled = devices[kind].length === 0;
    if (kind === 'audiooutput' && !('setSinkId' in HTMLMediaElement.prototype)) select.disabled = true;
  }
}

/** The name this browser joined with last time, if any. */
function savedName() {
  try {
    return localStorage.getItem(NAME_KEY) ?? '';
  } catch {
    return '';
  }
}

function saveName(name) {
  try {
    localStorage.setItem(NAME_KEY, name);
  } catch {
    // Storage disabled: the name lasts for this page only.
  }
}

async function start() {
  const url = params.get('url');
  const token = params.get('token');
  if (!url || !token) {
    showJoinForm();
    return;
  }
  let claims;
  try {
    claims = tokenClaims(token);
  } catch (error) {
    showJoinForm(`This join link cannot be used: ${error.message}.`);
    return;
  }
  const quality = ['low', 'medium', 'high'].includes(params.get('quality')) ? params.get('quality') : 'medium';
  const call = new Call({
    signalingUrl: url,
    token,
    conference: params.get('conference') ?? claims.conference,
    quality,
    iceTransportPolicy: ['1', 'tls'].includes(params.get('relay')) ? 'relay' : 'all',
    relayOverTls: params.get('relay') === 'tls',
  });
  window.conclave = { call, claims };
  const identity = claims.identity ?? 'you';
  const self = { identity, name: identity };
  $('#conference').textContent = claims.conference;
  $('#lobby-conference').textContent = claims.conference;
  document.title = `${claims.conference} · Conclave`;
  const lobby = params.get('join') !== 'now';
  $(lobby ? '#lobby' : '#call').hidden = false;

  const local = await openLocalMedia(quality);
  const notice = (text) => {
    view.showNotice(text);
    $('#lobby-notice').hidden = !text;
    $('#lobby-notice').textContent = text;
  };
  notice(explain(local.problems));
  window.conclave.deviceProblems = local.problems.map((p) => ({ code: p.code, kind: p.kind }));
  call.setLocalTracks(local);
  await fillDevicePickers();

  // Each received video comes in the layer its tile needs (small tiles, low layers).
  view.onTileWidth = (trackId, width) => call.fitReceivedVideo(trackId, width);
  // With last-N, the page of the grid shown is what the node forwards first.
  view.onViewing = (participantIds) => call.setViewing(participantIds);
  const render = () => view.render(call, self);
  const preview = () => {
    const track = call.localCamera;
    const video = $('#preview-video');
    if ((video.srcObject?.getVideoTracks()[0] ?? null) !== track) video.srcObject = track ? new MediaStream([track]) : null;
    $('#preview').classList.toggle('no-video', !track);
    $('#preview-off').hidden = Boolean(track);
  };
  const controls = () => {
    // Toggles keep their names; aria-pressed (and its style) says whether each is on. The
    // lobby's start disabled, until the devices are open and the buttons wired.
    for (const mic of [$('#mic'), $('#lobby-mic')]) {
      mic.setAttribute('aria-pressed', String(call.micMuted));
      mic.disabled = !call.localMicrophone;
    }
    for (const camera of [$('#camera'), $('#lobby-camera')]) {
      camera.setAttribute('aria-pressed', String(!call.localCamera));
      camera.disabled = false;
    }
    $('#screen').setAttribute('aria-pressed', String(Boolean(call.localScreen)));
    $('#screen').disabled = !navigator.mediaDevices?.getDisplayMedia;
    preview();
  };
  const toggleMic = () => {
    call.setMicrophoneMuted(!call.micMuted);
    controls();
    render();
  };
  const toggleCamera = async () => {
    if (call.localCamera) {
      await call.setCamera(null);
    } else {
      try {
        await call.setCamera(await openDevice('video', quality));
        notice('');
      } catch (error) {
        notice(error.message);
      }
    }
    controls();
  };
  // A device chosen in one picker is chosen in all, and used at once, in the lobby or the call.
  const chooseDevice = async (kind, deviceId) => {
    saveChoice(kind, deviceId);
    for (const select of $$(`select[data-device="${kind}"]`)) select.value = deviceId;
    try {
      if (kind === 'audioinput') await call.setMicrophone(await openDevice('audio', quality, deviceId));
      if (kind === 'videoinput') await call.setCamera(await openDevice('video', quality, deviceId));
    } catch (error) {
      notice(error.message);
    }
    if (kind === 'audiooutput') view.routeAllAudio(deviceId);
    controls();
  };

  call.addEventListener('state', (e) => {
    view.showState(e.detail.state, e.detail.reason);
    document.body.dataset.state = e.detail.state;
    if ([State.FAILED, State.ENDED, State.LEFT].includes(e.detail.state)) $('#rejoin').hidden = false;
  });
  call.addEventListener('participants', render);
  call.addEventListener('speaker', render);
  call.addEventListener('local', () => {
    render();
    controls();
  });
  call.addEventListener('notice', (e) => view.showNotice(e.detail));
  call.addEventListener('chat', (e) => view.addChat(e.detail));
  call.addEventListener('chatready', (e) => {
    $('#chat-input').disabled = !e.detail;
    $('#chat-send').disabled = !e.detail;
  });

  for (const id of ['#mic', '#lobby-mic']) $(id).addEventListener('click', toggleMic);
  for (const id of ['#camera', '#lobby-camera']) $(id).addEventListener('click', toggleCamera);
  for (const select of $$('select[data-device]')) {
    select.addEventListener('change', (e) => chooseDevice(select.dataset.device, e.target.value));
  }
  navigator.mediaDevices?.addEventListener?.('devicechange', fillDevicePickers);
  $('#screen').addEventListener('click', async () => {
    if (call.localScreen) {
      call.stopScreenShare();
      return;
    }
    try {
      call.startScreenShare(await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false }));
    } catch (error) {
      if (error.name !== 'NotAllowedError') view.showNotice(`Screen sharing failed: ${error.message}`);
    }
  });
  // The microphone's level beside its buttons, and "you are muted" when speaking while muted
  // (sound in the last second; shown for 3 s after the last sound heard).
  let meter = null;
  const recent = [];
  let hintUntil = 0;
  setInterval(() => {
    const track = call.localMicrophone;
    if (meter?.source !== track) {
      meter?.stop();
      meter = track ? new MicLevel(track) : null;
    }
    const level = meter ? meter.level() : 0;
    for (const id of ['#mic-level', '#lobby-level']) $(id).value = Math.min(1, level * 4);
    recent.push(level);
    if (recent.length > 20) recent.shift();
    if (call.micMuted && spoke(recent)) hintUntil = Date.now() + 3000;
    $('#muted-hint').hidden = !(call.micMuted && Date.now() < hintUntil);
  }, 50);
  // Each participant's connection quality on their tile, every two seconds.
  setInterval(() => {
    call.receptionQuality().then((grades) => view.showQuality(grades)).catch(() => {});
  }, 2000);
  $('#leave').addEventListener('click', () => call.leave());
  for (const [id, step] of [['#page-prev', -1], ['#page-next', 1]]) {
    $(id).addEventListener('click', () => {
      view.page = Math.max(0, view.page + step);
      render();
    });
  }
  $('#sound').addEventListener('click', () => view.resumeSound());
  // Keyboard shortcuts (aria-keyshortcuts on the buttons), not while typing.
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.target.closest?.('input, textarea, select')) return;
    const [button, action] = { m: ['#mic', toggleMic], v: ['#camera', toggleCamera] }[e.key.toLowerCase()] ?? [];
    if (action && !$(button).disabled) {
      e.preventDefault();
      action();
    }
  });
  $('#rejoin').addEventListener('click', () => location.reload());
  $('#chat-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('#chat-input').value.trim();
    if (text && call.sendChat(text)) {
      view.addChat({ identity: self.identity, message: text, own: true });
      $('#chat-input').value = '';
    }
  });

  const enter = () => {
    $('#lobby').hidden = true;
    $('#call').hidden = false;
    view.showState(call.state, '');
    controls();
    render();
    call.join({ name: self.name });
  };
  controls();
  if (!lobby) {
    enter();
    return;
  }
  $('#lobby-name').value = savedName() || identity;
  $('#lobby-form').addEventListener('submit', (e) => {
    e.preventDefault();
    self.name = $('#lobby-name').value.trim() || identity;
    saveName(self.name);
    enter();
  });
  $('#lobby-join').disabled = false;
  $('#lobby-join').focus();
}

start().catch((error) => view.showNotice(`The page failed to start: ${error.message}`));
