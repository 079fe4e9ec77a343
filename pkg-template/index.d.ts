export * from './rtcroom.js';

/** Loads and instantiates the SDK's WebAssembly once; later calls return the same Promise. */
export function load(wasm?: string | URL | Request | Response | BufferSource | WebAssembly.Module): Promise<void>;
