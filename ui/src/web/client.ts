// The page's side of the worker: one request id per call, promises for results, callbacks for progress.
import type { BenchResult, FromWorker, GenBenchResult, GenerateResult, Loaded, RunResult, Steering, ToWorker } from "./protocol";

type Pending = { resolve: (m: FromWorker) => void; reject: (e: Error) => void; onPartial?: (m: GenerateResult) => void };

export class ModelClient {
  private worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
  private pending = new Map<number, Pending>();
  private nextId = 1;
  private loading: Pending | null = null;
  onProgress: (text: string) => void = () => {};
  onError: (message: string) => void = () => {};

  constructor() {
    this.worker.onmessage = (e: MessageEvent<FromWorker>) => this.receive(e.data);
    this.worker.onerror = (e) => this.onError(e.message || "the inference worker failed to start");
  }

  private receive(m: FromWorker) {
    if (m.type === "progress") return this.onProgress(m.text);
    if (m.type === "loaded") {
      this.loading?.resolve(m);
      this.loading = null;
      return;
    }
    if (m.type === "error") {
      const p = m.id !== undefined ? this.pending.get(m.id) : this.loading;
      if (m.id !== undefined) this.pending.delete(m.id);
      else this.loading = null;
      if (p) p.reject(new Error(m.message));
      else this.onError(m.message);
      return;
    }
    const p = this.pending.get(m.id);
    if (!p) return;
    if (m.type === "generated" && !m.done) return p.onPartial?.(m);
    this.pending.delete(m.id);
    p.resolve(m);
  }

  private send<T extends FromWorker>(msg: ToWorker, onPartial?: (m: GenerateResult) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if ("id" in msg) this.pending.set(msg.id, { resolve: resolve as (m: FromWorker) => void, reject, onPartial });
      this.worker.postMessage(msg);
    });
  }

  load(base: string): Promise<Loaded> {
    return new Promise<Loaded>((resolve, reject) => {
      this.loading = { resolve: resolve as (m: FromWorker) => void, reject };
      this.worker.postMessage({ type: "load", base } satisfies ToWorker);
    });
  }

  run(prompt: string, steer: Steering, topK = 10): Promise<RunResult> {
    return this.send({ type: "run", id: this.nextId++, prompt, steer, topK });
  }

  generate(prompt: string, steer: Steering, maxNewTokens: number, onPartial?: (m: GenerateResult) => void, cache = true) {
    return this.send<GenerateResult>({ type: "generate", id: this.nextId++, prompt, steer, maxNewTokens, cache }, onPartial);
  }

  genBench(ids: number[], newTokens: number, cache = true): Promise<GenBenchResult> {
    return this.send({ type: "genbench", id: this.nextId++, ids, newTokens, cache });
  }

  bench(ids: number[], repeats = 10, warmup = 2): Promise<BenchResult> {
    return this.send({ type: "bench", id: this.nextId++, ids, repeats, warmup });
  }
}
