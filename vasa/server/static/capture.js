// AudioWorklet: hands the page every block of input samples (mono, the context's 16 kHz rate).
class Capture extends AudioWorkletProcessor {
  process(inputs) {
    const input = inputs[0];
    if (input && input.length) this.port.postMessage(input[0].slice(0));
    return true;
  }
}
registerProcessor("vasa-capture", Capture);
