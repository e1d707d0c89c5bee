import { useMutation } from "@tanstack/react-query";
import { useState } from "react";
import type { QKSideNode } from "../../api/attribution";
import { attributionApi } from "../../api/attribution";
import { describeNode } from "../../attribution/nodeIds";
import { showToken } from "../../state";

// Why a head attends where it does: its attention score at (query, key) decomposed into the features and
// tokens on both sides (QK attribution), the largest pairs first.
export function QKPanel(props: { prompt: string; tokens: string[]; nLayers: number; nHeads: number }) {
  const { tokens } = props;
  const last = Math.max(0, tokens.length - 1);
  const [layer, setLayer] = useState(Math.min(1, props.nLayers - 1));
  const [head, setHead] = useState(0);
  const [query, setQuery] = useState(last);
  const [key, setKey] = useState(0);
  const qk = useMutation({ mutationFn: attributionApi.qk });
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  const posSelect = (value: number, set: (v: number) => void, testid: string, upTo: number) => (
    <select value={value} onChange={(e) => set(Number(e.target.value))} data-testid={testid}>
      {range(upTo + 1).map((i) => (
        <option key={i} value={i}>
          {i} {showToken(tokens[i] ?? "")}
        </option>
      ))}
    </select>
  );
  const r = qk.data;
  return (
    <div data-testid="qk-panel">
      <form
        className="inline-form"
        onSubmit={(e) => {
          e.preventDefault();
          // positions from the end: the graph's tokens may start with a special token the QK route adds itself
          const n = tokens.length;
          qk.mutate({ prompt: props.prompt, layer, head, query_pos: query - n, key_pos: Math.min(key, query) - n, top: 12 });
        }}
      >
        <label>
          layer{" "}
          <select value={layer} onChange={(e) => setLayer(Number(e.target.value))} data-testid="qk-layer">
            {range(props.nLayers).map((l) => (
              <option key={l}>{l}</option>
            ))}
          </select>
        </label>
        <label>
          head{" "}
          <select value={head} onChange={(e) => setHead(Number(e.target.value))} data-testid="qk-head">
            {range(props.nHeads).map((h) => (
              <option key={h}>{h}</option>
            ))}
          </select>
        </label>
        <label>query {posSelect(query, setQuery, "qk-query", last)}</label>
        <label>key {posSelect(Math.min(key, query), setKey, "qk-key", query)}</label>
        <button type="submit" disabled={!props.prompt || qk.isPending} data-testid="qk-go">
          {qk.isPending ? "attributing…" : "attribute"}
        </button>
      </form>
      {qk.error && <div className="error">{(qk.error as Error).message}</div>}
      {r && (
        <div data-testid="qk-result">
          <p className="mono">
            L{r.layer}H{r.head} · query {showToken(r.tokens[r.query_pos] ?? "")} → key {showToken(r.tokens[r.key_pos] ?? "")} · score <span data-testid="qk-score">{r.score.toFixed(4)}</span> · all pairs sum to{" "}
            {r.pair_sum.toFixed(4)} · attention weight {r.pattern.toFixed(3)}
          </p>
          <table className="table" data-testid="qk-pairs">
            <thead>
              <tr>
                <th className="left">query side</th>
                <th className="left">key side</th>
                <th>contribution</th>
              </tr>
            </thead>
            <tbody>
              {r.top_pairs.map((p, i) => (
                <tr key={i} data-testid="qk-pair">
                  <td className="left mono" title={p.query}>
                    {describeNode(p.query, r.tokens)}
                  </td>
                  <td className="left mono" title={p.key}>
                    {describeNode(p.key, r.tokens)}
                  </td>
                  <td className={p.value >= 0 ? "up" : "down"}>{p.value.toFixed(4)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {r && (
        <div className="two">
          <Side title="query side" rows={r.query_nodes} tokens={r.tokens} testid="qk-query-nodes" />
          <Side title="key side" rows={r.key_nodes} tokens={r.tokens} testid="qk-key-nodes" />
        </div>
      )}
    </div>
  );
}

function Side({ title, rows, tokens, testid }: { title: string; rows: QKSideNode[]; tokens: string[]; testid: string }) {
  return (
    <div data-testid={testid}>
      <h3>{title}: summed over the other side</h3>
      <table className="table">
        <tbody>
          {rows.slice(0, 8).map((n) => (
            <tr key={n.id}>
              <td className="left mono" title={n.id}>
                {describeNode(n.id, tokens)}
              </td>
              <td className={n.total >= 0 ? "up" : "down"}>{n.total.toFixed(4)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
