// The serverless hub: rtcroom-server's rooms (the rtcroom-hub crate, as WebAssembly) in a
// SharedWorker that every same-origin tab using SharedWorkerTransport connects to.
import init, { HubWorker } from './rtcroom_hub.js';

const hub = init().then(() => new HubWorker());

self.onconnect = (event) => {
  const port = event.ports[0];
  hub.then(
    (h) => h.connect(port),
    (err) => {
      port.postMessage({ close: 1011, reason: `the rtcroom hub did not load: ${err?.message ?? err}` });
      port.close();
    },
  );
};
