// Attribution graphs over the transcoder replacement model: the REST calls and the live-intervention socket of
// the Workbench API (docs/transcoders/README.md, "## Workbench API"). Every number comes from the server; this
// file only names the shapes the Circuits view reads.
import type { GraphDoc, GraphNode } from "./client";
import { request } from "./client";

export interface TranscoderInfo {
  model: string;
  path: string;
  layers: number[];
  d_tc: number;
  activation?: string;
  skip?: boolean;
  has_features?: boolean;
}

export interface BuildRequest {
  prompt: string;
  node_threshold: number;
  edge_threshold: number;
  max_feature_nodes: number;
}

/** A supernode as the server's spec names it (``transcoders/supernodes.py``): ids ``sn0``, ``sn1``… */
export interface Supernode {
  id: string;
  name: string;
  members: string[];
}

export interface QKRequest {
  prompt: string;
  layer: number;
  head: number;
  query_pos: number;
  key_pos: number;
  k: number;
}

export interface QKPair {
  query: string;
  key: string;
  value: number;
}

/** One side's residual parts, by their summed contribution to the score. */
export interface QKSideNode {
  id: string;
  kind: string;
  pos: number;
  layer?: number;
  feature?: number;
  activation?: number;
  total: number;
}

export interface QKResult {
  layer: number;
  head: number;
  query_pos: number;
  key_pos: number;
  tokens: string[];
  /** the model's own pre-softmax score */
  score: number;
  /** the sum over every (query node, key node) pair: equals ``score`` up to rounding */
  pair_sum: number;
  pattern: number;
  query_nodes: QKSideNode[];
  key_nodes: QKSideNode[];
  top_pairs: QKPair[];
}

export interface TopToken {
  token: string;
  token_id: number;
  prob: number;
  logit: number;
}

/** One of the graph's nodes before and after an intervention (logit nodes: the logit; features: the activation). */
export interface NodeChange {
  id: string;
  before: number;
  after: number;
  token_id?: number;
}

/** One node intervention (``transcoders/intervene.py``): ablate = 0, scale = value × activation, add, set. */
export interface InterventionItem {
  node: string;
  mode: "ablate" | "scale" | "add" | "set";
  value: number;
}

/** The replacement model's answer to a set of interventions (``transcoders/intervene.py``). */
export interface InterveneResult {
  id: number | null;
  tokens: string[];
  top_before: TopToken[];
  top_after: TopToken[];
  logit_nodes: NodeChange[];
  downstream: NodeChange[];
}

export interface FeatureInfo {
  layer: number;
  feature: number;
  has_store: boolean;
  density?: number | null;
  mean_activation?: number | null;
  max_activation?: number | null;
  top_tokens?: string[];
  logit_top_tokens?: string[];
  logit_bottom_tokens?: string[];
  contexts?: { tokens: string[]; center: number; activation: number }[];
}

const BASE = "/api/attribution";

export const attributionApi = {
  transcoders: () => request<TranscoderInfo>("GET", `${BASE}/transcoders`),
  build: (body: BuildRequest) => request<GraphDoc>("POST", `${BASE}/graph`, body),
  prune: (graphId: string, node_threshold: number, edge_threshold: number) =>
    request<GraphDoc>("POST", `${BASE}/prune`, { graph_id: graphId, node_threshold, edge_threshold }),
  supernodes: (graphId: string) => request<{ groups: Supernode[] }>("POST", `${BASE}/supernodes`, { graph_id: graphId }),
  qk: (body: QKRequest) => request<QKResult>("POST", `${BASE}/qk`, body),
  feature: (layer: number, feature: number) => request<FeatureInfo>("GET", `${BASE}/feature/${layer}/${feature}`),
};

/** The graph's id on the server (re-pruning, supernodes and interventions name it). */
export const graphId = (doc: GraphDoc): string => String(doc.meta.graph_id ?? "");

export const isFeature = (n: GraphNode): boolean => n.type === "feature" && n.layer != null && n.feature != null;

type Reply = ({ type: "result" } & InterveneResult) | { type: "error"; id: number | null; detail: string } | { type: "superseded"; id: number };

/** One socket for graph interventions; only the reply to the newest request is delivered (latest wins). */
export class InterveneLive {
  private ws: WebSocket | null = null;
  private seq = 0;
  private pending: string | null = null;
  private closed = false;

  constructor(
    private onResult: (r: InterveneResult) => void,
    private onError: (message: string) => void,
  ) {
    this.connect();
  }

  private connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/ws/attribution`);
    this.ws = ws;
    ws.onopen = () => {
      if (this.pending) ws.send(this.pending);
      this.pending = null;
    };
    ws.onclose = () => {
      if (!this.closed) setTimeout(() => this.connect(), 1000);
    };
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data) as Reply;
      if (msg.type === "superseded") return;
      if (msg.id !== this.seq && msg.id !== null) return;
      if (msg.type === "error") this.onError(msg.detail);
      else this.onResult(msg);
    };
  }

  send(graph: string, interventions: InterventionItem[]) {
    this.seq += 1;
    const text = JSON.stringify({ id: this.seq, graph_id: graph, interventions });
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(text);
    else this.pending = text;
  }

  close() {
    this.closed = true;
    this.ws?.close();
  }
}
