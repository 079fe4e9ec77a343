// rtcroom: the package entry. The wasm module is instantiated once, on the first `load()`;
// everything else is re-exported from the wasm-bindgen output (./rtcroom.js).
import init from './rtcroom.js';

export * from './rtcroom.js';

let loading = null;

/**
 * Loads and instantiates the SDK's WebAssembly once; later calls return the same Promise.
 * Pass a URL (or Response / bytes) to serve `rtcroom_bg.wasm` from elsewhere; by default it is
 * fetched next to this file, which bundlers (Vite, webpack 5) resolve by themselves.
 */
export function load(wasm) {
  if (!loading) {
    loading = init(wasm === undefined ? undefined : { module_or_path: wasm }).then(() => undefined);
    loading.catch(() => { loading = null; }); // a failed load may be retried
  }
  return loading;
}
