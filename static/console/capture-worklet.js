// AudioWorklet processor: microphone Float32 at the context's sampleRate
// (often 44.1 or 48 kHz) -> 16 kHz mono PCM16 little-endian, posted to the
// main thread in fixed frames (100 ms = 3,200 bytes by default).
//
// Downsampling without a low-pass folds everything above 8 kHz back into the
// speech band, so input passes a small windowed-sinc FIR first; the output
// samples are then linearly interpolated at fractional input positions. The
// fractional position carries over between 128-sample render quanta, so the
// output is one continuous signal with no clicks at block edges.

const TAPS = 31;

function lowpassTaps(cutoff) {
  // cutoff: fraction of the input sample rate (0..0.5).
  const taps = new Float32Array(TAPS);
  const mid = (TAPS - 1) / 2;
  let sum = 0;
  for (let i = 0; i < TAPS; i++) {
    const n = i - mid;
    const sinc = n === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * n) / (Math.PI * n);
    const hamming = 0.54 - 0.46 * Math.cos((2 * Math.PI * i) / (TAPS - 1));
    taps[i] = sinc * hamming;
    sum += taps[i];
  }
  for (let i = 0; i < TAPS; i++) taps[i] /= sum; // unity gain at DC
  return taps;
}

class PcmCaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.targetRate = opts.targetRate || 16000;
    this.frameSamples = Math.round((this.targetRate * (opts.frameMs || 100)) / 1000);
    this.step = sampleRate / this.targetRate; // input samples per output sample
    this.filter = this.step > 1 ? lowpassTaps((0.45 * this.targetRate) / sampleRate) : null;
    this.history = new Float32Array(TAPS);
    this.histPos = 0;
    // Filtered input not yet consumed by the interpolator (a render quantum
    // is 128 samples; a few carry over).
    this.pending = new Float32Array(4096);
    this.pendingLen = 0;
    this.pos = 0; // fractional read position in `pending`
    this.frame = new Int16Array(this.frameSamples);
    this.frameLen = 0;
    this.levelEvery = Math.round(sampleRate * 0.05);
    this.levelCount = 0;
    this.levelSumSq = 0;
    this.levelPeak = 0;
    this.running = true;
    this.port.onmessage = (event) => {
      const msg = event.data || {};
      if (msg.type === "flush") {
        this.emitFrame(true);
        this.port.postMessage({ type: "flushed" });
      } else if (msg.type === "stop") {
        this.running = false;
      }
    };
  }

  emitFrame(partial) {
    if (this.frameLen === 0) return;
    const samples = partial ? this.frame.slice(0, this.frameLen) : this.frame;
    this.port.postMessage({ type: "frame", buffer: samples.buffer }, [samples.buffer]);
    this.frame = new Int16Array(this.frameSamples);
    this.frameLen = 0;
  }

  pushOutput(value) {
    const s = value < -1 ? -1 : value > 1 ? 1 : value;
    this.frame[this.frameLen++] = Math.round(s < 0 ? s * 0x8000 : s * 0x7fff);
    if (this.frameLen === this.frameSamples) this.emitFrame(false);
  }

  filtered(x) {
    if (!this.filter) return x;
    this.history[this.histPos] = x;
    let acc = 0;
    let idx = this.histPos;
    for (let k = 0; k < TAPS; k++) {
      acc += this.filter[k] * this.history[idx];
      idx = idx === 0 ? TAPS - 1 : idx - 1;
    }
    this.histPos = this.histPos === TAPS - 1 ? 0 : this.histPos + 1;
    return acc;
  }

  process(inputs) {
    if (!this.running) return false;
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const channels = input.length;
    const n = input[0].length;
    for (let i = 0; i < n; i++) {
      let x = input[0][i];
      if (channels > 1) {
        for (let c = 1; c < channels; c++) x += input[c][i];
        x /= channels;
      }
      const ax = Math.abs(x);
      if (ax > this.levelPeak) this.levelPeak = ax;
      this.levelSumSq += x * x;
      if (++this.levelCount >= this.levelEvery) {
        this.port.postMessage({
          type: "level",
          rms: Math.sqrt(this.levelSumSq / this.levelCount),
          peak: this.levelPeak,
        });
        this.levelCount = 0;
        this.levelSumSq = 0;
        this.levelPeak = 0;
      }
      if (this.pendingLen === this.pending.length) this.compact();
      this.pending[this.pendingLen++] = this.filtered(x);
    }
    // Interpolate every output sample whose neighbours are both available.
    while (this.pos + 1 < this.pendingLen) {
      const i = Math.floor(this.pos);
      const frac = this.pos - i;
      this.pushOutput(this.pending[i] + (this.pending[i + 1] - this.pending[i]) * frac);
      this.pos += this.step;
    }
    this.compact();
    return true;
  }

  compact() {
    const drop = Math.min(Math.floor(this.pos), this.pendingLen);
    if (drop === 0) return;
    this.pending.copyWithin(0, drop, this.pendingLen);
    this.pendingLen -= drop;
    this.pos -= drop;
  }
}

registerProcessor("pcm-capture", PcmCaptureProcessor);
