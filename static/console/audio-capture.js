// Microphone capture: getUserMedia -> AudioWorklet -> 16 kHz PCM16 frames.
//
// Echo cancellation, noise suppression and auto gain are switched off: they
// alter the signal the recogniser needs (auto gain clipped it in tests).

const WORKLET_URL = new URL("./capture-worklet.js", import.meta.url);

export class MicrophoneUnavailable extends Error {}

export async function startCapture({ onFrame, onLevel, targetRate = 16000, frameMs = 100 }) {
  if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new MicrophoneUnavailable("insecure_context");
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: {
        channelCount: 1,
        echoCancellation: false,
        noiseSuppression: false,
        autoGainControl: false,
      },
      video: false,
    });
  } catch (err) {
    throw new MicrophoneUnavailable(err && err.name === "NotAllowedError" ? "denied" : "no_device");
  }
  const context = new AudioContext();
  try {
    await context.audioWorklet.addModule(WORKLET_URL);
  } catch (err) {
    stream.getTracks().forEach((t) => t.stop());
    await context.close();
    throw err;
  }
  const source = context.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(context, "pcm-capture", {
    numberOfInputs: 1,
    numberOfOutputs: 1,
    outputChannelCount: [1],
    processorOptions: { targetRate, frameMs },
  });
  let flushed = null;
  node.port.onmessage = (event) => {
    const msg = event.data;
    if (msg.type === "frame") onFrame(new Uint8Array(msg.buffer));
    else if (msg.type === "level" && onLevel) onLevel(msg.rms, msg.peak);
    else if (msg.type === "flushed" && flushed) flushed();
  };
  source.connect(node);
  // The node writes silence; connecting it keeps the graph pulling it.
  node.connect(context.destination);
  await context.resume();

  return {
    sampleRate: context.sampleRate,
    // Emit the last partial frame, then release the microphone.
    async stop() {
      await new Promise((resolve) => {
        flushed = resolve;
        node.port.postMessage({ type: "flush" });
        setTimeout(resolve, 1000);
      });
      node.port.postMessage({ type: "stop" });
      source.disconnect();
      node.disconnect();
      stream.getTracks().forEach((t) => t.stop());
      await context.close();
    },
  };
}
