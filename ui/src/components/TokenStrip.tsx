import * as d3 from "d3";
import { showToken } from "../state";

// The prompt's tokens; with attribution scores they are coloured red (pushes the prediction up) / blue.
export function TokenStrip({ tokens, scores }: { tokens: string[]; scores?: number[] | null }) {
  const max = scores ? Math.max(1e-9, ...scores.map(Math.abs)) : 1;
  const color = d3.scaleDiverging(d3.interpolateRdBu).domain([max, 0, -max]);
  return (
    <div className="tokens" data-testid="token-strip">
      {tokens.map((t, i) => (
        <span
          key={i}
          className="token"
          data-testid="token"
          style={scores ? { background: color(scores[i] ?? 0), color: Math.abs(scores[i] ?? 0) > 0.6 * max ? "#fff" : undefined } : undefined}
          title={`#${i}${scores ? ` grad×input ${scores[i]?.toFixed(3)}` : ""}`}
        >
          {showToken(t)}
        </span>
      ))}
    </div>
  );
}
