// REST and WebSocket client. Types come from the generated OpenAPI schema.
import type { components } from "./schema";

type S = components["schemas"];
export type ModelInfo = S["ModelInfo"];
export type InterventionSpec = S["InterventionSpec"];
export type RunResponse = S["RunResponse"];
export type WsResult = S["WsResult"];
export type WsError = S["WsError"];
export type WsSuperseded = S["WsSuperseded"];
export type AttentionGrid = S["AttentionGridResponse"];
export type HeadPattern = S["HeadResponse"];
export type Lens = S["LensResponse"];
export type Residual = S["ResidualResponse"];
export type Attribution = S["AttributionResponse"];
export type Generation = S["GenerateResponse"];
export type SteeringVector = S["SteeringVector"];
export type EmbeddingMap = S["EmbeddingMapResponse"];
export type WordNeighbours = S["NeighboursResponse"];
export type Analogy = S["AnalogyResponse"];
export type SAEList = S["SAEList"];
export type FeatureTablePage = S["TablePage"];
export type FeatureDetail = S["FeatureDetail"];
export type PromptActs = S["PromptActs"];
export type LiveEditInfo = S["LiveEditInfo"];
export type ContrastResult = S["ContrastResponse"];
export type ExportResult = S["ExportResponse"];
export type GraphDoc = S["GraphDocument"];
export type GraphNode = S["GraphNode"];
export type SuiteInfo = S["SuiteInfo"];
export type SuiteFeature = S["SuiteFeature"];
export type TopFeatures = S["TopFeaturesResponse"];
export type PrepareStatus = S["PrepareStatus"];

export class ApiError extends Error {
  constructor(public status: number, message: string) {
    super(message);
  }
}

export async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch {
    throw new ApiError(0, "Cannot reach the NeuroScope server. Is `neuroscope ui` still running?");
  }
  const text = await res.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const detail = (data as { detail?: unknown } | null)?.detail;
    const msg = typeof detail === "string" ? detail : text || res.statusText;
    throw new ApiError(res.status, `${res.status}: ${msg}`);
  }
  return data as T;
}

export const api = {
  model: () => request<ModelInfo>("GET", "/api/model"),
  run: (prompt: string, interventions: InterventionSpec) =>
    request<RunResponse>("POST", "/api/run", { prompt, interventions }),
  attention: (prompt: string) => request<AttentionGrid>("POST", "/api/attention", { prompt }),
  head: (prompt: string, layer: number, head: number) =>
    request<HeadPattern>("POST", "/api/attention/head", { prompt, layer, head }),
  lens: (prompt: string, interventions: InterventionSpec) =>
    request<Lens>("POST", "/api/lens", { prompt, interventions }),
  residual: (prompt: string, interventions: InterventionSpec) =>
    request<Residual>("POST", "/api/residual", { prompt, interventions }),
  attribution: (prompt: string, interventions: InterventionSpec) =>
    request<Attribution>("POST", "/api/attribution", { prompt, interventions }),
  generate: (prompt: string, interventions: InterventionSpec, max_new_tokens: number) =>
    request<Generation>("POST", "/api/generate", { prompt, interventions, max_new_tokens }),
  vectors: () => request<S["SteeringVectorList"]>("GET", "/api/steering/vectors"),
  createVector: (body: S["CreateVectorRequest"]) => request<SteeringVector>("POST", "/api/steering/vectors", body),
  embeddingMap: (body: S["EmbeddingMapRequest"]) => request<EmbeddingMap>("POST", "/api/embeddings/map", body),
  neighbours: (body: S["NeighboursRequest"]) => request<WordNeighbours>("POST", "/api/embeddings/neighbours", body),
  analogy: (body: S["AnalogyRequest"]) => request<Analogy>("POST", "/api/embeddings/analogy", body),
  saes: () => request<SAEList>("GET", "/api/features"),
  featureTable: (sae: string, q: { offset: number; limit: number; sort: string; descending: boolean; search: string }) => {
    const p = new URLSearchParams({ offset: String(q.offset), limit: String(q.limit), sort: q.sort, descending: String(q.descending) });
    if (q.search) p.set("search", q.search);
    return request<FeatureTablePage>("GET", `/api/features/${encodeURIComponent(sae)}/table?${p}`);
  },
  feature: (sae: string, id: number) => request<FeatureDetail>("GET", `/api/features/${encodeURIComponent(sae)}/feature/${id}`),
  promptActs: (sae: string, body: S["PromptActsRequest"]) => request<PromptActs>("POST", `/api/features/${encodeURIComponent(sae)}/prompt`, body),
  setLabel: (sae: string, feature: number, label: string) =>
    request<S["LabelResponse"]>("PUT", `/api/features/${encodeURIComponent(sae)}/label`, { feature, label }),
  contrast: (sae: string, body: S["ContrastRequest"]) => request<ContrastResult>("POST", `/api/features/${encodeURIComponent(sae)}/contrast`, body),
  edits: () => request<S["EditList"]>("GET", "/api/edits"),
  prepareEdit: (body: S["EditRequest"]) => request<LiveEditInfo>("POST", "/api/edits", body),
  exportBundle: (body: S["ExportRequest"]) => request<ExportResult>("POST", "/api/export", body),
  suite: () => request<SuiteInfo>("GET", "/api/graphs/suite"),
  prepare: () => request<PrepareStatus>("GET", "/api/prepare"),
  topFeatures: (body: S["TopFeaturesRequest"]) => request<TopFeatures>("POST", "/api/graphs/top-features", body),
  suiteFeature: (layer: number, feature: number) => request<SuiteFeature>("GET", `/api/graphs/feature/${layer}/${feature}`),
  provenance: (body: S["ProvenanceRequest"]) => request<GraphDoc>("POST", "/api/graphs/provenance", body),
  circuit: (body: S["CircuitRequest"]) => request<GraphDoc>("POST", "/api/graphs/circuit", body),
};

type Reply = WsResult | WsError | WsSuperseded;

/** One WebSocket to /ws; only the reply to the newest request is delivered (latest wins). */
export class LiveRun {
  private ws: WebSocket | null = null;
  private seq = 0;
  private pending: string | null = null;
  private closed = false;

  constructor(
    private onResult: (r: WsResult) => void,
    private onError: (message: string) => void,
    private onStatus: (connected: boolean) => void,
  ) {
    this.connect();
  }

  private connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/ws`);
    this.ws = ws;
    ws.onopen = () => {
      this.onStatus(true);
      if (this.pending) ws.send(this.pending);
      this.pending = null;
    };
    ws.onclose = () => {
      this.onStatus(false);
      if (!this.closed) setTimeout(() => this.connect(), 1000);
    };
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data) as Reply;
      if (msg.type === "superseded") return;
      if (msg.id !== this.seq && msg.id !== null) return; // stale reply to an older request
      if (msg.type === "error") this.onError(msg.detail);
      else this.onResult(msg);
    };
  }

  send(prompt: string, interventions: InterventionSpec) {
    this.seq += 1;
    const text = JSON.stringify({ id: this.seq, prompt, interventions, top_k: 10 });
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(text);
    else this.pending = text;
  }

  close() {
    this.closed = true;
    this.ws?.close();
  }
}
