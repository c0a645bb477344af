// The local microphone's level, measured on a copy of its track: the call disables the track
// itself while muted, and a disabled track measures as silence, yet "you are muted" needs to
// hear the user speak.

/** Levels above this (root mean square of the samples, full scale 1) count as speech. */
const SPEECH = 0.02;

export class MicLevel {
  #context;
  #analyser;
  #copy;
  #samples;

  constructor(track) {
    this.source = track;
    this.#copy = track.clone();
    this.#copy.enabled = true;
    this.#context = new AudioContext();
    this.#analyser = this.#context.createAnalyser();
    // 2,048 samples: about 43 ms, near the 50 ms between two looks, so short sounds are seen.
    this.#analyser.fftSize = 2048;
    this.#context.createMediaStreamSource(new MediaStream([this.#copy])).connect(this.#analyser);
    this.#samples = new Float32Array(this.#analyser.fftSize);
  }

  /** The level of the last samples, 0 (silence) to about 1 (full scale). */
  level() {
    // Browsers start an audio context suspended until the user interacted with the page.
    if (this.#context.state === 'suspended') this.#context.resume().catch(() => {});
    this.#analyser.getFloatTimeDomainData(this.#samples);
    let sum = 0;
    for (const s of this.#samples) sum += s * s;
    return Math.sqrt(sum / this.#samples.length);
  }

  stop() {
    this.#copy.stop();
    this.#context.close().catch(() => {});
  }
}

/** Whether the user spoke in `recent` levels: at least two above the speech threshold. */
export function spoke(recent) {
  return recent.filter((l) => l > SPEECH).length >= 2;
}
