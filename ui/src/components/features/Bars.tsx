import { showToken } from "../../state";

// Horizontal bars for (token, value) pairs: promoted to the right in orange, suppressed to the left in blue.
export function Bars({ rows, testid }: { rows: { token: string; value: number }[]; testid: string }) {
  const max = Math.max(1e-9, ...rows.map((r) => Math.abs(r.value)));
  return (
    <div className="bars" data-testid={testid}>
      {rows.map((r, i) => (
        <div key={i} className="bar-row" data-token={r.token} data-value={r.value}>
          <span className="mono tok">{showToken(r.token)}</span>
          <span className="bar-track">
            <span className={`bar ${r.value >= 0 ? "pos" : "neg"}`} style={r.value >= 0 ? { left: "50%", width: `${(50 * r.value) / max}%` } : { right: "50%", width: `${(50 * -r.value) / max}%` }} />
          </span>
          <span className="mono val">{r.value.toFixed(2)}</span>
        </div>
      ))}
    </div>
  );
}
