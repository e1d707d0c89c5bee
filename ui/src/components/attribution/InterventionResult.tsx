import type { InterveneResult } from "../../api/attribution";
import { showToken } from "../../state";

// What an intervention did: the graph's logit nodes before and after (exact, from the replacement model), the
// next-token distribution before and after, and how many of the graph's feature nodes moved.
export function InterventionResult({ result, changed, pending }: { result: InterveneResult; changed: number; pending: boolean }) {
  const known = [...result.top_before, ...result.top_after];
  const label = (id: number) => known.find((t) => t.token_id === id)?.token ?? `#${id}`;
  return (
    <div data-testid="intervene-result" aria-busy={pending ? "true" : "false"}>
      <p className="hint" data-testid="intervene-summary">
        {pending ? "updating…" : `${result.downstream.length} of the graph's feature nodes changed (${changed} by more than 5%)`}
      </p>
      {result.logit_nodes.length > 0 && (
        <table className="table" data-testid="intervene-logit-nodes">
          <thead>
            <tr>
              <th className="left">logit node</th>
              <th>before</th>
              <th>after</th>
              <th>Δ logit</th>
            </tr>
          </thead>
          <tbody>
            {result.logit_nodes.map((n) => {
              const d = n.after - n.before;
              return (
                <tr key={n.id} data-testid="intervene-logit-node" data-id={n.id} data-before={n.before} data-after={n.after}>
                  <td className="left mono">{showToken(label(n.token_id ?? -1))}</td>
                  <td>{n.before.toFixed(3)}</td>
                  <td>{n.after.toFixed(3)}</td>
                  <td className={d >= 0 ? "up" : "down"}>
                    {d >= 0 ? "+" : ""}
                    {d.toFixed(3)}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      <table className="table" data-testid="intervene-logits">
        <thead>
          <tr>
            <th className="left">next token before</th>
            <th>prob</th>
            <th className="left">after</th>
            <th>prob</th>
          </tr>
        </thead>
        <tbody>
          {result.top_after.map((t, i) => {
            const b = result.top_before[i];
            return (
              <tr key={i} data-testid="intervene-logit" data-token-id={t.token_id} data-prob={t.prob}>
                <td className="left mono">{b ? showToken(b.token) : ""}</td>
                <td>{b ? b.prob.toFixed(4) : ""}</td>
                <td className="left mono">{showToken(t.token)}</td>
                <td>{t.prob.toFixed(4)}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
