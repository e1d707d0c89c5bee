import * as d3 from "d3";
import type { Lens } from "../api/client";
import { showToken } from "../state";

const color = d3.scaleSequential(d3.interpolateYlGnBu).domain([0, 1]);

// Layer x position table of the top decoded token, each cell coloured by its probability.
export function LogitLens({ lens }: { lens: Lens }) {
  return (
    <div className="scroll">
      <table className="lens" data-testid="lens-table">
        <thead>
          <tr>
            <th />
            {lens.tokens.map((t, i) => (
              <th key={i} title={`position ${i}`}>
                {showToken(t)}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {lens.top_tokens.map((row, r) => (
            <tr key={r}>
              <th>{lens.layers[r]}</th>
              {row.map((tok, i) => {
                const p = lens.probs[r][i];
                return (
                  <td key={i} style={{ background: color(p), color: p > 0.55 ? "#fff" : "#111" }} title={`${lens.layers[r]} @ ${i}: ${showToken(tok)} p=${p.toFixed(3)}`}>
                    {showToken(tok)}
                  </td>
                );
              })}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
