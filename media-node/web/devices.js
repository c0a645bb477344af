// Cameras, microphones and speakers: opening them with the devices the user picked (kept in
// localStorage), listing them for the picker, and saying clearly why they could not be opened.

const STORAGE_KEY = 'conclave.devices';

/** Capture size and rate for each quality the page offers. */
const CAPTURE = {
  low: { width: 320, height: 180, frameRate: 15 },
  medium: { width: 640, height: 360, frameRate: 24 },
  high: { width: 1280, height: 720, frameRate: 30 },
};

/** The devices the user picked: {audioinput, videoinput, audiooutput} device ids. */
export function loadChoice() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? '{}');
    return saved && typeof saved === 'object' ? saved : {};
  } catch {
    return {};
  }
}

export function saveChoice(kind, deviceId) {
  const choice = loadChoice();
  choice[kind] = deviceId;
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify(choice));
  } catch {
    // Storage disabled: the choice lasts for this page only.
  }
}

/** Devices by kind: {audioinput: [...], videoinput: [...], audiooutput: [...]}. */
export async function listDevices() {
  const lists = { audioinput: [], videoinput: [], audiooutput: [] };
  if (!navigator.mediaDevices?.enumerateDevices) return lists;
  for (const d of await navigator.mediaDevices.enumerateDevices()) {
    if (lists[d.kind] && d.deviceId) lists[d.kind].push(d);
  }
  return lists;
}

// The chosen device is asked for exactly: asked for as `ideal`, Chromium keeps to a device
// already open, or to the first one.
function constraints(kind, deviceId, quality) {
  const device = deviceId ? { deviceId: { exact: deviceId } } : {};
  if (kind === 'audio') return deviceId ? device : true;
  const size = CAPTURE[quality] ?? CAPTURE.medium;
  return {
    width: { ideal: size.width },
    height: { ideal: size.height },
    frameRate: { ideal: size.frameRate },
    ...device,
  };
}

/**
 * Opens one device ('audio' or 'video'): `deviceId` when given (the one the user just
 * picked), else the one remembered, else any (the remembered one may be gone); throws a
 * DeviceError.
 */
export async function openDevice(kind, quality, deviceId = null) {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new DeviceError('unsupported', kind, 'This browser cannot use cameras or microphones here (the page needs HTTPS or localhost).');
  }
  const remembered = deviceId ? null : loadChoice()[kind === 'audio' ? 'audioinput' : 'videoinput'];
  const open = async (id) => (await navigator.mediaDevices.getUserMedia({ [kind]: constraints(kind, id, quality) })).getTracks()[0];
  try {
    try {
      return await open(deviceId ?? remembered);
    } catch (error) {
      if (!remembered || !['OverconstrainedError', 'NotFoundError'].includes(error.name)) throw error;
      return await open(null);
    }
  } catch (error) {
    const problem = DeviceError.from(error, kind);
    problem.cause = error;
    throw problem;
  }
}

/**
 * Opens the microphone and the camera, each on its own so that one missing or refused device
 * still lets the other work. Returns {microphone, camera, problems: [DeviceError]}.
 */
export async function openLocalMedia(quality) {
  const result = { microphone: null, camera: null, problems: [] };
  for (const [kind, slot] of [['audio', 'microphone'], ['video', 'camera']]) {
    try {
      result[slot] = await openDevice(kind, quality);
    } catch (error) {
      result.problems.push(error);
    }
  }
  return result;
}

/** One message for the problems of opening the devices: a shared cause is said once. */
export function explain(problems) {
  if (problems.length === 2 && problems[0].code === problems[1].code && problems[0].cause) {
    const what = problems[0].code === 'missing' ? 'camera or microphone' : 'camera and microphone';
    return DeviceError.from(problems[0].cause, 'both', what).message;
  }
  return problems.map((p) => p.message).join(' ');
}

/** Plays remote audio on the chosen speaker, where the browser can choose. */
export async function routeAudio(element, deviceId = loadChoice().audiooutput) {
  if (!deviceId || typeof element.setSinkId !== 'function') return;
  try {
    await element.setSinkId(deviceId);
  } catch {
    // The speaker went away: the default one plays.
  }
}

export class DeviceError extends Error {
  constructor(code, kind, message) {
    super(message);
    this.code = code;
    this.kind = kind;
  }

  static from(error, kind, what = kind === 'audio' ? 'microphone' : 'camera') {
    switch (error?.name) {
      case 'NotAllowedError':
      case 'SecurityError':
        return new DeviceError('denied', kind, `Access to the ${what} was denied. Allow it in the browser's site settings (the icon in the address bar), then choose the device again.`);
      case 'NotFoundError':
      case 'OverconstrainedError':
        return new DeviceError('missing', kind, `No ${what} was found. Connect one and choose it in Devices; you can still watch, listen and chat.`);
      case 'NotReadableError':
      case 'AbortError':
        return new DeviceError('busy', kind, `The ${what} could not be started: another application may be using it.`);
      default:
        return new DeviceError('other', kind, `The ${what} could not be opened: ${error?.message ?? error}.`);
    }
  }
}
