// Drives headless Chromium (Debian's, through playwright-core) for Conclave's end-to-end
// tests. It reads one JSON command per line on stdin and answers each with one JSON line on
// stdout ({"ok": true, ...} or {"ok": false, "error": "..."}); the Rust test decides what
// to assert. Each named participant is its own browser process with a fake camera and
// microphone, so participants share nothing but the network.
//
// Commands:
//   {"op": "open", "name": "alice", "link": "http://.../?url=...&token=...",
//    "devices": "fake" (default) | "denied" (permission prompts refused) | "none" (no devices),
//    "tls": {"home": "/dir", "hostResolverRules": "MAP n1.media.test 10.0.0.1"} (optional: an
//    https link; Chromium runs with HOME=home, whose .pki/nssdb trusts the test CA, and maps
//    host names without DNS), "viewport": {"width": 1100, "height": 700} (the default),
//    "lobby": "join" (the default: joins from the lobby as a user would, with the Join
//    button) | "stay" (stays in the lobby), "autoplay": "allowed" (the default) | "gesture"
//    (sound plays only after a user gesture, as in a browser the user has not used yet),
//    "muted": true (mutes in the lobby before joining), "scale": 2 (device pixels per CSS
//    pixel, as on a high-density screen), "cameraFps": 5 (the fake cameras'
//    frame rate, for rooms of many browsers), "shared": "room" (participants opened with the
//    same group share one Chromium, each in a context of its own: its own page, renderer and
//    storage, one browser and GPU process for all, which two cores can carry for a big room)}
//   {"op": "enter", "name": "alice", "link": "...", "muted": false} opens another link in the
//                                                     same browser, joining from its lobby
//   {"op": "cpu", "name": "alice"}                  -> CPU seconds of the whole browser so far
//   {"op": "state", "name": "alice"}                -> state, reason, signalingUrl, origin, secure
//   {"op": "waitState", "name": "alice", "state": "connected", "timeoutMs": 30000}
//   {"op": "video", "name": "alice"}                -> inbound video stats per track
//   {"op": "videoRtp", "name": "alice"}             -> video RTP counters, sent and received
//   {"op": "gapWatch", "name": "alice"}             starts timing gaps in decoded camera video
//   {"op": "gapReport", "name": "alice"}            -> per sender: longest gap (ms) without a
//                                                     decoded frame since gapWatch, and now
//   {"op": "peer", "name": "alice"}             -> negotiation state and transceivers
//   {"op": "mediaPath", "name": "alice"}            -> selected candidate pair types
//   {"op": "chat", "name": "alice", "text": "hi"}
//   {"op": "chatLog", "name": "alice"}              -> messages received
//   {"op": "shareScreen", "name": "alice"}
//   {"op": "click", "name": "alice", "selector": "#mic"}
//   {"op": "key", "name": "alice", "key": "m"}      presses a key on the page
//   {"op": "attribute", "name": "alice", "selector": "#mic", "attribute": "aria-pressed"}
//   {"op": "box", "name": "alice", "selector": "#mic"} -> its bounding box in CSS pixels
//   {"op": "text", "name": "alice", "selector": "#page-label"} -> its text, whether visible
//   {"op": "axe", "name": "alice"}                  -> accessibility violations (axe-core)
//   {"op": "tiles", "name": "alice"}                -> tiles shown, with video sizes
//   {"op": "fill", "name": "alice", "selector": "#lobby-name", "text": "Ana"}
//   {"op": "choose", "name": "alice", "selector": "#device-videoinput", "index": 1}
//                                                   picks a device -> its id and label
//   {"op": "local", "name": "alice"}                -> the local tracks (ids, devices), what each
//                                                     sender sends, the lobby preview
//   {"op": "audio", "name": "alice"}                -> inbound audio stats per track
//   {"op": "viewport", "name": "alice", "width": 390, "height": 844} resizes the page
//   {"op": "sounds", "name": "alice"}               -> remote audio elements: playing, speaker
//   {"op": "layout", "name": "alice", "selectors": ["#mic"]} -> viewport, page width, boxes
//   {"op": "turnProbe", "name": "alice", "iceServers": [...]} -> relay candidates gathered
//   {"op": "screenshot", "name": "alice", "path": "/abs/file.png"}
//   {"op": "close"}

import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CONCLAVE_CHROMIUM || '/usr/bin/chromium';
const BASE_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-dev-shm-usage',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-default-apps',
  '--disable-extensions',
  '--disable-sync',
  '--no-first-run',
  '--mute-audio',
];

/** Flags for when a page may play sound. */
const AUTOPLAY = {
  allowed: ['--autoplay-policy=no-user-gesture-required'],
  gesture: ['--autoplay-policy=user-gesture-required'],
};

/** Flags for each kind of media devices a participant has. */
const DEVICES = {
  // Fake cameras and microphones, every permission prompt accepted. Of the three cameras, the
  // second gives depth frames (Y16) no video encoder takes; the first and third send video.
  fake: [
    '--use-fake-device-for-media-stream=device-count=3',
    '--use-fake-ui-for-media-stream',
    '--auto-select-desktop-capture-source=Entire screen',
  ],
  // Fake devices, but the user refuses access (headless dismisses the prompt).
  denied: ['--use-fake-device-for-media-stream'],
  // No camera or microphone at all (a headless browser has none of its own).
  none: ['--use-fake-ui-for-media-stream'],
};

const browsers = new Map();
/** Browsers several participants share (`shared` in `open`), by group name. */
const sharedBrowsers = new Map();

function page(name) {
  const b = browsers.get(name);
  if (!b) throw new Error(`no browser named ${name}`);
  return b.page;
}

async function open({ name, link, devices = 'fake', tls = null, viewport = { width: 1100, height: 700 }, lobby = 'join', autoplay = 'allowed', muted = false, cameraFps = null, shared = null, scale = 1 }) {
  if (!DEVICES[devices]) throw new Error(`devices must be one of ${Object.keys(DEVICES).join(', ')}`);
  const flags = DEVICES[devices].map((f) => (cameraFps && f.startsWith('--use-fake-device-for-media-stream') ? `${f},fps=${cameraFps}` : f));
  if (!AUTOPLAY[autoplay]) throw new Error(`autoplay must be one of ${Object.keys(AUTOPLAY).join(', ')}`);
  // A page over plain http from a real node's address is no secure context, and the camera
  // needs one: Chromium is told to treat exactly this node's origin as secure. Over https the
  // page is a secure context of its own: the certificate is checked against the NSS store in
  // the given HOME (never ignored), and node names resolve by the given rules.
  const secure = tls
    ? [`--host-resolver-rules=${tls.hostResolverRules}`]
    : [`--unsafely-treat-insecure-origin-as-secure=${new URL(link).origin}`];
  const env = tls ? { ...process.env, HOME: tls.home } : undefined;
  const launch = () => chromium.launch({ executablePath: CHROMIUM, headless: true, env, args: [...BASE_ARGS, ...flags, ...AUTOPLAY[autoplay], ...secure] });
  if (shared && !sharedBrowsers.has(shared)) sharedBrowsers.set(shared, launch());
  const browser = await (shared ? sharedBrowsers.get(shared) : launch());
  const context = await browser.newContext({ viewport, deviceScaleFactor: scale });
  const p = await context.newPage();
  const console = [];
  p.on('console', (m) => console.push(`${m.type()}: ${m.text()}`));
  p.on('pageerror', (e) => console.push(`pageerror: ${e.message}`));
  // Playwright evaluates with a user gesture, which lets a page play sound: a page that must
  // not get one (autoplay: gesture) is read through the DevTools protocol, without.
  const quiet = autoplay === 'gesture' ? await context.newCDPSession(p) : null;
  browsers.set(name, { browser, page: p, console, quiet });
  return enter({ name, link, lobby, muted });
}

// Opens `link` in the page of `name`; from the lobby, joins (muted when `muted`) unless told
// to stay.
async function enter({ name, link, lobby = 'join', muted = false }) {
  const p = page(name);
  await p.goto(link);
  await waitFor(name, () => Boolean(window.conclave?.call), 60000);
  if (lobby === 'join' && await read(name, () => !document.querySelector('#lobby').hidden)) {
    if (muted) await p.click('#lobby-mic:not([disabled])', { timeout: 15000 });
    await p.click('#lobby-join:not([disabled])', { timeout: 15000 });
  }
  return {};
}

// CPU seconds used so far by the browser of `name`, all its processes (the page's renderer,
// where video is decoded, the GPU and utility processes, the browser itself).
async function cpu({ name }) {
  const b = browsers.get(name);
  if (!b) throw new Error(`no browser named ${name}`);
  b.cdp ??= await b.browser.newBrowserCDPSession();
  const { processInfo } = await b.cdp.send('SystemInfo.getProcessInfo');
  return {
    seconds: processInfo.reduce((sum, p) => sum + (p.cpuTime ?? 0), 0),
    byType: Object.fromEntries(processInfo.map((p) => [`${p.type}-${p.id}`, p.cpuTime])),
  };
}

/** Runs `fn` (no arguments) in the page of `name`; its result. */
async function read(name, fn) {
  const b = browsers.get(name);
  if (!b) throw new Error(`no browser named ${name}`);
  if (!b.quiet) return b.page.evaluate(fn);
  const { result, exceptionDetails } = await b.quiet.send('Runtime.evaluate', {
    expression: `(${fn})()`, awaitPromise: true, returnByValue: true, userGesture: false,
  });
  if (exceptionDetails) throw new Error(exceptionDetails.exception?.description ?? exceptionDetails.text);
  return result.value;
}

/** Waits until `fn` is true in the page of `name`, polling every 200 ms. */
async function waitFor(name, fn, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await read(name, fn).catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${fn}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function state({ name }) {
  return read(name, () => {
    const c = window.conclave.call;
    return {
      state: c.state,
      reason: c.reason,
      signalingUrl: c.signalingUrl,
      origin: location.origin,
      secure: window.isSecureContext,
      notice: document.querySelector('#notice').textContent,
      deviceProblems: window.conclave.deviceProblems ?? [],
      credentialRenewals: c.credentialRenewals,
    };
  });
}

async function waitState({ name, state: wanted, timeoutMs = 30000 }) {
  const is = new Function(`return window.conclave.call.state === ${JSON.stringify(wanted)};`);
  await waitFor(name, is, timeoutMs);
  return state({ name });
}

async function video({ name }) {
  return { tracks: await page(name).evaluate(() => window.conclave.call.inboundVideo()) };
}

// Samples decoded camera frames per sender every 50 ms in the page: a sender's gap is the
// time since its last newly decoded frame, across peer connections (a move to another node
// starts a new one, whose counters start again at 0).
async function videoRtp({ name }) {
  return { rtp: await page(name).evaluate(() => window.conclave.call.videoRtp()) };
}

async function gapWatch({ name }) {
  await page(name).evaluate(() => {
    const gaps = { last: {}, longest: {}, frames: {} };
    window.conclaveGaps = gaps;
    const sample = async () => {
      const now = performance.now();
      for (const t of await window.conclave.call.inboundVideo()) {
        if (t.source !== 'camera' || !t.identity) continue;
        const key = `${t.identity}|${t.trackId}`;
        const before = gaps.frames[key];
        if (t.framesDecoded > 0 && (before === undefined || t.framesDecoded !== before)) {
          gaps.last[t.identity] = now;
        }
        gaps.frames[key] = t.framesDecoded;
      }
      for (const [identity, last] of Object.entries(gaps.last)) {
        gaps.longest[identity] = Math.max(gaps.longest[identity] ?? 0, now - last);
      }
    };
    gaps.timer = setInterval(() => { sample().catch(() => {}); }, 50);
  });
  return {};
}

async function gapReport({ name }) {
  const gaps = await page(name).evaluate(() => {
    const g = window.conclaveGaps;
    if (!g) return null;
    const now = performance.now();
    return Object.fromEntries(Object.keys(g.last).map((identity) => [identity, {
      longestMs: Math.round(Math.max(g.longest[identity] ?? 0, now - g.last[identity])),
      sinceLastMs: Math.round(now - g.last[identity]),
    }]));
  });
  if (gaps === null) throw new Error('gapWatch was not started');
  return { gaps };
}

async function peer({ name }) {
  return { peer: await page(name).evaluate(() => window.conclave.call.describePeer()) };
}

async function mediaPath({ name }) {
  return { path: await page(name).evaluate(() => window.conclave.call.mediaPath()) };
}

async function chat({ name, text }) {
  const p = page(name);
  await p.waitForSelector('#chat-input:not([disabled])', { timeout: 15000 });
  await p.fill('#chat-input', text);
  await p.click('#chat-send');
  return {};
}

async function chatLog({ name }) {
  const messages = await page(name).$$eval('#chat-log li:not(.own)', (items) =>
    items.map((li) => ({ identity: li.querySelector('.who').textContent, message: li.querySelector('.text').textContent })));
  return { messages };
}

async function shareScreen({ name }) {
  const p = page(name);
  await p.click('#screen');
  await p.waitForFunction(() => window.conclave.call.localScreen !== null, null, { timeout: 10000 });
  return {};
}

async function click({ name, selector }) {
  await page(name).click(selector);
  return {};
}

async function key({ name, key: pressed }) {
  await page(name).keyboard.press(pressed);
  return {};
}

async function attribute({ name, selector, attribute: which }) {
  return { value: await page(name).getAttribute(selector, which) };
}

async function text({ name, selector }) {
  const l = page(name).locator(selector).first();
  return { text: await l.textContent(), visible: await l.isVisible() };
}

async function box({ name, selector }) {
  return { box: await page(name).locator(selector).boundingBox() };
}

// axe-core's rules run in the page; only violations come back, with the elements they name.
// The page's Content-Security-Policy refuses added script tags: axe is evaluated through the
// DevTools protocol instead, as the driver's other page functions are.
async function axe({ name }) {
  const p = page(name);
  const source = await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
  await p.evaluate(source);
  const result = await p.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return {
    violations: result.violations.map((v) => ({
      id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' ')),
    })),
  };
}

async function tiles({ name }) {
  const shown = await page(name).$$eval('#grid .tile', (all) => all.map((t) => {
    const v = t.querySelector('video');
    return {
      identity: t.dataset.identity,
      name: t.querySelector('.name').textContent,
      source: t.dataset.source,
      self: t.classList.contains('self'),
      muted: !t.querySelector('.mic').hidden,
      quality: t.querySelector('.quality')?.dataset.quality ?? null,
      speaking: t.classList.contains('speaking'),
      video: !t.classList.contains('no-video'),
      width: v.videoWidth,
      height: v.videoHeight,
    };
  }));
  return { tiles: shown };
}

async function fill({ name, selector, text }) {
  await page(name).fill(selector, text);
  return {};
}

async function choose({ name, selector, index }) {
  const p = page(name);
  const options = await p.$$eval(`${selector} option`, (all) => all.map((o) => ({ value: o.value, label: o.textContent })));
  if (!options[index]) throw new Error(`${selector} has ${options.length} options, not ${index + 1}`);
  await p.selectOption(selector, options[index].value);
  return options[index];
}

async function local({ name }) {
  return page(name).evaluate(() => {
    const c = window.conclave.call;
    const device = (t) => (t ? { id: t.id, deviceId: t.getSettings().deviceId, label: t.label, live: t.readyState === 'live' } : null);
    const preview = document.querySelector('#preview-video');
    return {
      microphone: device(c.localMicrophone),
      camera: device(c.localCamera),
      micMuted: c.micMuted,
      preview: { width: preview.videoWidth, playing: !preview.paused && preview.srcObject !== null },
      sending: c.describePeer()?.transceivers.filter((t) => t.source).map((t) => ({ source: t.source, track: t.sending })) ?? [],
    };
  });
}

async function audio({ name }) {
  return { tracks: await page(name).evaluate(() => window.conclave.call.inboundAudio()) };
}

async function viewport({ name, width, height }) {
  await page(name).setViewportSize({ width, height });
  return {};
}

async function sounds({ name }) {
  return read(name, () => ({
    sounds: [...document.querySelectorAll('#audio audio')].map((a) => ({
      track: a.dataset.track, playing: !a.paused, sinkId: a.sinkId,
    })),
    playSoundShown: !document.querySelector('#sound').hidden,
  }));
}

async function layout({ name, selectors = [] }) {
  const p = page(name);
  const page_ = await p.evaluate(() => ({
    width: innerWidth, height: innerHeight, scrollWidth: document.documentElement.scrollWidth,
  }));
  const boxes = {};
  for (const selector of selectors) boxes[selector] = await p.locator(selector).first().boundingBox();
  return { page: page_, boxes };
}

async function turnProbe({ name, iceServers }) {
  const candidates = await page(name).evaluate(async (servers) => {
    const pc = new RTCPeerConnection({ iceServers: servers, iceTransportPolicy: 'relay' });
    const found = [];
    pc.onicecandidate = (e) => { if (e.candidate?.candidate) found.push(e.candidate.candidate); };
    const errors = [];
    pc.onicecandidateerror = (e) => errors.push(`${e.errorCode} ${e.errorText}`);
    pc.createDataChannel('probe');
    await pc.setLocalDescription();
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, 10000);
      pc.onicegatheringstatechange = () => {
        if (pc.iceGatheringState === 'complete') { clearTimeout(timer); resolve(); }
      };
    });
    pc.close();
    return { found, errors };
  }, iceServers);
  return { relay: candidates.found.filter((c) => / typ relay /.test(c)).length, errors: candidates.errors };
}

async function screenshot({ name, path }) {
  await page(name).screenshot({ path });
  return {};
}

async function logs({ name }) {
  return { console: browsers.get(name)?.console ?? [] };
}

async function close() {
  const all = new Set([...browsers.values()].map((b) => b.browser));
  await Promise.all([...all].map((b) => b.close().catch(() => {})));
  browsers.clear();
  sharedBrowsers.clear();
  return {};
}

const OPS = { open, state, waitState, video, videoRtp, gapWatch, gapReport, peer, mediaPath, chat, chatLog, shareScreen, click, key, attribute, text, box, axe, tiles, fill, choose, local, audio, sounds, layout, viewport, enter, cpu, turnProbe, screenshot, logs, close };

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let reply;
  try {
    const command = JSON.parse(line);
    const op = OPS[command.op];
    if (!op) throw new Error(`unknown op ${command.op}`);
    reply = { ok: true, ...(await op(command)) };
  } catch (error) {
    reply = { ok: false, error: String(error?.message ?? error) };
  }
  process.stdout.write(`${JSON.stringify(reply)}\n`);
  if (line.includes('"op":"close"')) break;
}
await close();
process.exit(0);
