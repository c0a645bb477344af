// The call page: reads the join link (?url=<signaling URL>&token=<join token>), opens the
// camera and microphone, joins, and wires the controls (mute, camera, screen share, devices,
// chat, leave) to the call and the view. `window.conclave` exposes the call for debugging
// and for the end-to-end tests.

import { Call, State, tokenClaims } from './call.js';
import { explain, listDevices, loadChoice, openDevice, openLocalMedia, saveChoice } from './devices.js';
import { MicLevel, spoke } from './level.js';
import { View } from './view.js';

const $ = (selector) => document.querySelector(selector);
const params = new URLSearchParams(location.search);
const view = new View(document.body);

function showJoinForm(problem) {
  $('#join-form').hidden = false;
  $('#call').hidden = true;
  $('#join-url').value = params.get('url') ?? '';
  $('#join-token').value = params.get('token') ?? '';
  if (problem) $('#join-problem').textContent = problem;
}

async function fillDevicePicker() {
  const devices = await listDevices();
  const choice = loadChoice();
  for (const kind of ['audioinput', 'videoinput', 'audiooutput']) {
    const select = $(`#device-${kind}`);
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
  const self = { identity: claims.identity ?? 'you' };
  $('#conference').textContent = claims.conference;
  document.title = `${claims.conference} · Conclave`;

  const local = await openLocalMedia(quality);
  view.showNotice(explain(local.problems));
  window.conclave.deviceProblems = local.problems.map((p) => ({ code: p.code, kind: p.kind }));
  call.setLocalTracks(local);
  await fillDevicePicker();

  // Each received video comes in the layer its tile needs (small tiles, low layers).
  view.onTileWidth = (trackId, width) => call.fitReceivedVideo(trackId, width);
  const render = () => view.render(call, self);
  const controls = () => {
    // Toggles keep their names; aria-pressed (and its style) says whether each is on.
    $('#mic').setAttribute('aria-pressed', String(call.micMuted));
    $('#mic').disabled = !local.microphone;
    $('#camera').setAttribute('aria-pressed', String(!call.localCamera));
    $('#screen').setAttribute('aria-pressed', String(Boolean(call.localScreen)));
    $('#screen').disabled = !navigator.mediaDevices?.getDisplayMedia;
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

  $('#mic').addEventListener('click', () => {
    call.setMicrophoneMuted(!call.micMuted);
    controls();
    render();
  });
  $('#camera').addEventListener('click', async () => {
    if (call.localCamera) {
      await call.setCamera(null);
    } else {
      try {
        await call.setCamera(await openDevice('video', quality));
        view.showNotice('');
      } catch (error) {
        view.showNotice(error.message);
      }
    }
    controls();
  });
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
  // The microphone's level beside its button, and "you are muted" when speaking while muted
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
    $('#mic-level').value = Math.min(1, level * 4);
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
  // Keyboard shortcuts (aria-keyshortcuts on the buttons), not while typing.
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.target.closest?.('input, textarea, select')) return;
    const button = { m: '#mic', v: '#camera' }[e.key.toLowerCase()];
    if (button && !$(button).disabled) {
      e.preventDefault();
      $(button).click();
    }
  });
  $('#rejoin').addEventListener('click', () => location.reload());
  $('#device-audioinput').addEventListener('change', async (e) => {
    saveChoice('audioinput', e.target.value);
    try {
      await call.setMicrophone(await openDevice('audio', quality, e.target.value));
      local.microphone = true;
    } catch (error) {
      view.showNotice(error.message);
    }
    controls();
  });
  $('#device-videoinput').addEventListener('change', async (e) => {
    saveChoice('videoinput', e.target.value);
    try {
      await call.setCamera(await openDevice('video', quality, e.target.value));
    } catch (error) {
      view.showNotice(error.message);
    }
    controls();
  });
  $('#device-audiooutput').addEventListener('change', (e) => {
    saveChoice('audiooutput', e.target.value);
    view.routeAllAudio(e.target.value);
  });
  navigator.mediaDevices?.addEventListener?.('devicechange', fillDevicePicker);
  $('#chat-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('#chat-input').value.trim();
    if (text && call.sendChat(text)) {
      view.addChat({ identity: self.identity, message: text, own: true });
      $('#chat-input').value = '';
    }
  });

  view.showState(call.state, '');
  controls();
  render();
  call.join();
}

start().catch((error) => view.showNotice(`The page failed to start: ${error.message}`));
