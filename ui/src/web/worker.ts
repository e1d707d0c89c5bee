/// <reference lib="webworker" />
// The inference worker: fetches the export, checks every file against the manifest's SHA-256, tokenises
// with the exported tokenizer.json, runs part A, adds alpha * vector to the residual, runs part B.
// With the KV-cached parts (manifest.kv_parts) only those are loaded: a prompt runs with an empty past (one
// masked dummy slot), and generation feeds only the new token, reusing the returned present_* tensors.
import { Tokenizer } from "@huggingface/tokenizers";
import * as ort from "onnxruntime-web/wasm";
import type { Steering, ToWorker } from "./protocol";

declare const self: DedicatedWorkerGlobalScope;

interface Part {
  file: string;
  external_data?: string[];
}
interface KvPart extends Part {
  inputs: string[];
  outputs: string[];
  past_shape: [string, number, string, number];
}
interface Manifest {
  format: string;
  model: string;
  split: number;
  n_layers: number;
  d_model: number;
  max_length: number;
  boundary_hook: string;
  parts: { a: Part; b: Part };
  files: Record<string, { sha256: string; bytes: number }>;
  tokenizer: { eos_token_id: number | null };
  kv_parts?: { a: KvPart; b: KvPart } | null;
  validation?: Record<string, unknown>;
}
interface VectorFile {
  vectors: { name: string; layer: number; norm: number; note?: string; values: number[] }[];
}

let manifest: Manifest;
let sessionA: ort.InferenceSession;
let sessionB: ort.InferenceSession;
let tokenizer: Tokenizer;
const vectors = new Map<string, Float32Array>();

const post = (m: unknown) => self.postMessage(m);

async function sha256(buf: ArrayBuffer): Promise<string> {
  if (!crypto?.subtle) throw new Error("cannot verify the files: crypto.subtle needs a secure context (https or localhost)");
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", buf));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Fetch one file of the export and check its size and SHA-256 against the manifest. */
async function fetchChecked(base: string, rel: string): Promise<ArrayBuffer> {
  const entry = manifest.files[rel];
  if (!entry) throw new Error(`${rel} is not listed in manifest.json: the export is incomplete`);
  post({ type: "progress", text: `fetching ${rel} (${(entry.bytes / 2 ** 20).toFixed(1)} MiB)` });
  const res = await fetch(new URL(rel, base));
  if (!res.ok) throw new Error(`${rel}: HTTP ${res.status}`);
  const buf = await res.arrayBuffer();
  post({ type: "progress", text: `verifying ${rel}` });
  const digest = await sha256(buf);
  if (buf.byteLength !== entry.bytes || digest !== entry.sha256) {
    throw new Error(
      `${rel} does not match manifest.json (SHA-256 ${digest.slice(0, 16)}…, expected ${entry.sha256.slice(0, 16)}…; ` +
        `${buf.byteLength} bytes, expected ${entry.bytes}): the file is corrupted or belongs to another export`,
    );
  }
  return buf;
}

async function loadPart(base: string, part: Part): Promise<ort.InferenceSession> {
  const model = new Uint8Array(await fetchChecked(base, part.file));
  const externalData = [];
  for (const rel of part.external_data ?? []) {
    externalData.push({ path: rel, data: new Uint8Array(await fetchChecked(base, rel)) });
  }
  post({ type: "progress", text: `creating the session for ${part.file}` });
  return ort.InferenceSession.create(model, {
    executionProviders: ["wasm"],
    graphOptimizationLevel: "all",
    ...(externalData.length ? { externalData } : {}),
  });
}

async function load(base: string) {
  const t0 = performance.now();
  const res = await fetch(new URL("manifest.json", base));
  if (!res.ok) {
    throw new Error(
      `manifest.json: HTTP ${res.status}: no ONNX export is served here. Export one with ` +
        "`neuroscope export-onnx --split K --out DIR` and start the workbench with `neuroscope ui --onnx DIR`.",
    );
  }
  manifest = await res.json();
  if (manifest.format !== "neuroscope-onnx-split") throw new Error("manifest.json is not a NeuroScope ONNX split manifest");
  // onnxruntime's glue and wasm sit beside the page (ort/), copied from the npm package at build time
  ort.env.wasm.wasmPaths = new URL("ort/", base).href;
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  const dec = new TextDecoder();
  const tokJson = JSON.parse(dec.decode(await fetchChecked(base, "tokenizer/tokenizer.json")));
  const tokConfig = manifest.files["tokenizer/tokenizer_config.json"]
    ? JSON.parse(dec.decode(await fetchChecked(base, "tokenizer/tokenizer_config.json")))
    : {};
  tokenizer = new Tokenizer(tokJson, tokConfig);
  let vf: VectorFile | null = null;
  if (manifest.files["vectors.json"]) {
    vf = JSON.parse(dec.decode(await fetchChecked(base, "vectors.json"))) as VectorFile;
    for (const v of vf.vectors) {
      if (v.values.length !== manifest.d_model) {
        throw new Error(`vector ${v.name} has ${v.values.length} values but d_model is ${manifest.d_model}`);
      }
      vectors.set(v.name, Float32Array.from(v.values));
    }
  }
  const parts = manifest.kv_parts ? [manifest.kv_parts.a, manifest.kv_parts.b] : [manifest.parts.a, manifest.parts.b];
  sessionA = await loadPart(base, parts[0]);
  sessionB = await loadPart(base, parts[1]);
  let bytes = 0;
  for (const p of parts) {
    for (const f of [p.file, ...(p.external_data ?? [])]) bytes += manifest.files[f].bytes;
  }
  post({
    type: "loaded",
    model: manifest.model,
    split: manifest.split,
    nLayers: manifest.n_layers,
    dModel: manifest.d_model,
    boundaryHook: manifest.boundary_hook,
    maxLength: manifest.max_length,
    vectors: (vf?.vectors ?? []).map(({ name, layer, norm, note }) => ({ name, layer, norm, note })),
    threads: ort.env.wasm.numThreads ?? 1,
    isolated: self.crossOriginIsolated,
    loadMs: performance.now() - t0,
    bytes,
    validation: manifest.validation ?? null,
    kvCache: !!manifest.kv_parts,
  });
}

function encode(prompt: string): number[] {
  if (!prompt) throw new Error("The prompt is empty: give at least one token of text.");
  const ids = tokenizer.encode(prompt).ids;
  if (ids.length === 0) throw new Error("The prompt is empty: give at least one token of text.");
  if (ids.length > manifest.max_length) {
    throw new Error(`The prompt is ${ids.length} tokens long but this export accepts at most ${manifest.max_length}.`);
  }
  return ids;
}

interface Forward {
  logits: Float32Array;
  resid: Float32Array;
  plain: Float32Array;
  n: number;
  ms: { a: number; b: number };
}

/** The KV cache of both parts: present_* of the last call, fed back as past_* (slot 0 is a masked dummy). */
interface Cache {
  a: Record<string, ort.Tensor>;
  b: Record<string, ort.Tensor>;
  slots: number; // past length, dummy included
}

function emptyCache(): Cache {
  const kv = manifest.kv_parts!;
  const part = (p: KvPart) => {
    const [, heads, , headDim] = p.past_shape;
    const feeds: Record<string, ort.Tensor> = {};
    for (const name of p.inputs.slice(2)) feeds[name] = new ort.Tensor("float32", new Float32Array(heads * headDim), [1, heads, 1, headDim]);
    return feeds;
  };
  return { a: part(kv.a), b: part(kv.b), slots: 1 };
}

/** present_* outputs become the next call's past_* inputs as they are (no copy). */
function nextPast(p: KvPart, out: ort.InferenceSession.ReturnType): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  p.inputs.slice(2).forEach((name, i) => (feeds[name] = out[p.outputs[i + 1]]));
  return feeds;
}

function dispose(feeds: Record<string, ort.Tensor>) {
  for (const t of Object.values(feeds)) t.dispose();
}

async function forward(ids: number[], steer: Steering, cache: Cache | null = null): Promise<Forward & { cache: Cache | null }> {
  const n = ids.length;
  const d = manifest.d_model;
  const inputIds = new ort.Tensor("int64", BigInt64Array.from(ids, (x) => BigInt(x)), [1, n]);
  const kv = manifest.kv_parts;
  if (kv && !cache) cache = emptyCache();
  // over past + new slots; the dummy slot 0 of a cache is hidden
  const total = cache ? cache.slots + n : n;
  const maskData = new BigInt64Array(total).fill(1n);
  if (cache) maskData[0] = 0n;
  const mask = new ort.Tensor("int64", maskData, [1, total]);
  let t = performance.now();
  const a = await sessionA.run({ input_ids: inputIds, attention_mask: mask, ...(cache ? cache.a : {}) });
  const plain = a.resid.data as Float32Array;
  const ms = { a: performance.now() - t, b: 0 };
  let resid = plain;
  const v = steer.vector ? vectors.get(steer.vector) : undefined;
  if (steer.vector && !v) throw new Error(`unknown steering vector ${steer.vector}`);
  if (v && steer.alpha !== 0) {
    // alpha * v at every position: NeuroScope's Steer at the boundary hook (blocks.{K+1}.hook_resid_pre)
    resid = new Float32Array(plain.length);
    const alpha = Math.fround(steer.alpha);
    for (let i = 0; i < plain.length; i++) resid[i] = plain[i] + Math.fround(alpha * v[i % d]);
  }
  t = performance.now();
  const b = await sessionB.run({ resid: new ort.Tensor("float32", resid, [1, n, d]), attention_mask: mask, ...(cache ? cache.b : {}) });
  ms.b = performance.now() - t;
  let next: Cache | null = null;
  if (kv && cache) {
    next = { a: nextPast(kv.a, a), b: nextPast(kv.b, b), slots: total };
    dispose(cache.a);
    dispose(cache.b);
  }
  return { logits: b.logits.data as Float32Array, resid, plain, n, ms, cache: next };
}

function lastRow(f: Forward): Float32Array {
  const vocab = f.logits.length / f.n;
  return f.logits.subarray((f.n - 1) * vocab, f.n * vocab);
}

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

function norms(x: Float32Array, n: number, d: number): number[] {
  const out: number[] = [];
  for (let p = 0; p < n; p++) {
    let s = 0;
    for (let i = p * d; i < (p + 1) * d; i++) s += x[i] * x[i];
    out.push(Math.sqrt(s));
  }
  return out;
}

async function run(id: number, prompt: string, steer: Steering, topK: number) {
  const ids = encode(prompt);
  const f = await forward(ids, steer);
  const row = lastRow(f);
  let max = -Infinity;
  for (const x of row) max = Math.max(max, x);
  let sum = 0;
  const probs = new Float64Array(row.length);
  for (let i = 0; i < row.length; i++) sum += probs[i] = Math.exp(row[i] - max);
  const order = Array.from(probs.keys()).sort((x, y) => probs[y] - probs[x]).slice(0, topK);
  post({
    type: "result",
    id,
    ids,
    tokens: ids.map((t) => tokenizer.decode([t])),
    top: order.map((t) => ({ id: t, token: tokenizer.decode([t]), prob: probs[t] / sum })),
    norms: norms(f.resid, f.n, manifest.d_model),
    normsPlain: norms(f.plain, f.n, manifest.d_model),
    ms: f.ms,
  });
}

/** Greedy new ids. With the KV-cached parts (and useCache) each step feeds only the new token; otherwise
 * each step runs the whole sequence. ``stopAtEos`` false lets a benchmark run a fixed number of steps. */
async function greedy(
  ids: number[],
  steer: Steering,
  maxNewTokens: number,
  useCache: boolean,
  stopAtEos: boolean,
  onToken: (fresh: number[]) => void,
): Promise<number[]> {
  ids = [...ids];
  const fresh: number[] = [];
  let cache: Cache | null = null;
  let feed = ids;
  for (let step = 0; step < maxNewTokens && ids.length < manifest.max_length; step++) {
    const f = await forward(feed, steer, useCache ? cache : null);
    if (useCache) cache = f.cache;
    else if (f.cache) {
      dispose(f.cache.a);
      dispose(f.cache.b);
    }
    const next = argmax(lastRow(f));
    if (stopAtEos && next === manifest.tokenizer.eos_token_id) break;
    ids.push(next);
    fresh.push(next);
    feed = useCache && manifest.kv_parts ? [next] : ids;
    onToken(fresh);
  }
  if (cache) {
    dispose(cache.a);
    dispose(cache.b);
  }
  return fresh;
}

async function generate(id: number, prompt: string, steer: Steering, maxNewTokens: number, useCache = true) {
  const text = (fresh: number[]) => tokenizer.decode(fresh, { skip_special_tokens: true });
  const fresh = await greedy(encode(prompt), steer, maxNewTokens, useCache, true, (f) =>
    post({ type: "generated", id, text: text(f), ids: f, done: false }),
  );
  post({ type: "generated", id, text: text(fresh), ids: fresh, done: true });
}

/** Generation speed: ``newTokens`` greedy steps after ``ids``, with or without the KV cache. */
async function genBench(id: number, ids: number[], newTokens: number, useCache: boolean) {
  const stamps: number[] = [];
  const t0 = performance.now();
  const fresh = await greedy(ids, { vector: null, alpha: 0 }, newTokens, useCache, false, () => stamps.push(performance.now()));
  const stepsMs = stamps.map((t, i) => t - (i ? stamps[i - 1] : t0));
  post({ type: "genbench", id, ids: fresh, stepsMs, totalMs: performance.now() - t0, cache: useCache && !!manifest.kv_parts });
}

async function bench(id: number, ids: number[], repeats: number, warmup: number) {
  const samples: number[] = [];
  for (let i = 0; i < warmup + repeats; i++) {
    const t = performance.now();
    const f = await forward(ids, { vector: null, alpha: 0 });
    argmax(lastRow(f));
    if (i >= warmup) samples.push(performance.now() - t);
  }
  post({ type: "bench", id, samplesMs: samples, tokens: ids.length });
}

// one request at a time: an onnxruntime session must not run twice at once, and results keep their order
let queue: Promise<void> = Promise.resolve();

async function handle(m: ToWorker) {
  try {
    if (m.type === "load") await load(m.base);
    else if (m.type === "run") await run(m.id, m.prompt, m.steer, m.topK);
    else if (m.type === "generate") await generate(m.id, m.prompt, m.steer, m.maxNewTokens, m.cache ?? true);
    else if (m.type === "genbench") await genBench(m.id, m.ids, m.newTokens, m.cache);
    else if (m.type === "bench") await bench(m.id, m.ids, m.repeats, m.warmup);
  } catch (err) {
    post({ type: "error", id: "id" in m ? m.id : undefined, message: err instanceof Error ? err.message : String(err) });
  }
}

self.onmessage = (e: MessageEvent<ToWorker>) => {
  queue = queue.then(() => handle(e.data));
};
