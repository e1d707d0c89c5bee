// Attribution graphs over the transcoder replacement model: the REST calls (/api/attribution-graph/*) and the
// live-intervention socket (/ws/attribution-graph) of the Workbench API (docs/transcoders/README.md). Types come
// from the generated OpenAPI schema; the graph itself is a neuroscope-graph/1 document (kind "attribution").
import type { GraphDoc } from "./client";
import { request } from "./client";
import type { components } from "./schema";

type S = components["schemas"];
export type TranscoderInfo = S["TranscodersInfo"];
export type QKResult = S["QKReply"];
export type QKSideNode = S["QKNode"];
export type InterveneResult = S["InterveneReply"] & { id?: number | string | null };
export type TopToken = S["TopToken"];
export type InterventionItem = S["NodeInterventionModel"];
export type SupernodeSpec = S["SupernodeSpecModel"];
export type Supernode = S["SupernodeGroup"];

export type BuildRequest = Required<S["BuildRequest"]>;

export type QKRequest = S["QKRequest"];

export type FeatureInfo = S["TranscoderFeatureDetail"];

const BASE = "/api/attribution-graph";
interface GraphReply {
  graph_id: string;
  graph: GraphDoc;
}
interface SupernodesReply {
  graph_id: string;
  spec: SupernodeSpec;
}

export const attributionApi = {
  transcoders: () => request<TranscoderInfo>("GET", `${BASE}/transcoders`),
  build: (body: BuildRequest) => request<GraphReply>("POST", `${BASE}/build`, body),
  prune: (graph_id: string, node_threshold: number, edge_threshold: number) => request<GraphReply>("POST", `${BASE}/prune`, { graph_id, node_threshold, edge_threshold }),
  /** automatic supernodes over what the view shows (its pruning) */
  supernodes: (graph_id: string, node_threshold: number, edge_threshold: number) =>
    request<SupernodesReply>("POST", `${BASE}/supernodes`, { graph_id, node_threshold, edge_threshold }),
  qk: (body: QKRequest) => request<QKResult>("POST", `${BASE}/qk`, body),
  /** with ``graph_id``: also the feature's activation at each of that graph's positions */
  feature: (layer: number, feature: number, graph_id: string) =>
    request<FeatureInfo>("GET", `${BASE}/feature/${layer}/${feature}?${new URLSearchParams({ graph_id, k: "10" })}`),
};

type Reply = ({ type: "result" } & InterveneResult) | { type: "error"; id: number | string | null; detail: string } | { type: "superseded"; id: number | string };

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
    const ws = new WebSocket(`${proto}//${location.host}/ws/attribution-graph`);
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

  send(graph: string, interventions: InterventionItem[], spec: SupernodeSpec | null) {
    this.seq += 1;
    const text = JSON.stringify({ type: "intervene", id: this.seq, graph_id: graph, interventions, spec, top_k: 10 });
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(text);
    else this.pending = text;
  }

  close() {
    this.closed = true;
    this.ws?.close();
  }
}
