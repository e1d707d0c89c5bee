// Messages between the page and its inference worker (the model never runs on the page's thread).

export interface VectorInfo {
  name: string;
  layer: number;
  norm: number;
  note?: string;
}

export interface Loaded {
  type: "loaded";
  model: string;
  split: number;
  nLayers: number;
  dModel: number;
  boundaryHook: string;
  maxLength: number;
  vectors: VectorInfo[];
  threads: number;
  isolated: boolean;
  loadMs: number;
  bytes: number;
  validation: Record<string, unknown> | null;
  kvCache: boolean; // the export's KV-cached parts are in use: one position per generated token
}

export interface TopToken {
  id: number;
  token: string;
  prob: number;
}

export interface RunResult {
  type: "result";
  id: number;
  tokens: string[];
  ids: number[];
  top: TopToken[];
  norms: number[]; // boundary residual norm per token, as part B receives it (steered)
  normsPlain: number[]; // the same before the vector is added
  ms: { a: number; b: number };
}

export interface GenerateResult {
  type: "generated";
  id: number;
  text: string;
  ids: number[];
  done: boolean;
}

export interface BenchResult {
  type: "bench";
  id: number;
  samplesMs: number[];
  tokens: number;
}

export interface GenBenchResult {
  type: "genbench";
  id: number;
  ids: number[];
  stepsMs: number[]; // per generated token; the first includes the prompt
  totalMs: number;
  cache: boolean;
}

export type FromWorker =
  | Loaded
  | RunResult
  | GenerateResult
  | BenchResult
  | GenBenchResult
  | { type: "progress"; text: string }
  | { type: "error"; id?: number; message: string };

export interface Steering {
  vector: string | null;
  alpha: number;
}

export type ToWorker =
  | { type: "load"; base: string }
  | { type: "run"; id: number; prompt: string; steer: Steering; topK: number }
  | { type: "generate"; id: number; prompt: string; steer: Steering; maxNewTokens: number; cache?: boolean }
  | { type: "genbench"; id: number; ids: number[]; newTokens: number; cache: boolean }
  | { type: "bench"; id: number; ids: number[]; repeats: number; warmup: number };
