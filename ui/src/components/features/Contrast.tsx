import { useState } from "react";
import type { ContrastResult } from "../../api/client";
import { api } from "../../api/client";

const lines = (s: string) => s.split("\n").map((x) => x.trim()).filter(Boolean);

// Which features separate two prompt sets (held-out AUROC with a bootstrap interval).
export function Contrast({ sae, onOpen }: { sae: string; onOpen: (id: number) => void }) {
  const [pos, setPos] = useState("");
  const [neg, setNeg] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [result, setResult] = useState<ContrastResult | null>(null);
  async function go() {
    setBusy(true);
    setError(null);
    try {
      setResult(await api.contrast(sae, { positive: lines(pos), negative: lines(neg), top: 15 }));
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  }
  return (
    <div data-testid="contrast">
      <div className="two">
        <textarea rows={4} placeholder="positive prompts, one per line (at least 4)" value={pos} onChange={(e) => setPos(e.target.value)} data-testid="contrast-positive" />
        <textarea rows={4} placeholder="negative prompts, one per line (at least 4)" value={neg} onChange={(e) => setNeg(e.target.value)} data-testid="contrast-negative" />
      </div>
      <button type="button" onClick={go} disabled={busy} data-testid="contrast-run">
        {busy ? "computing…" : "find separating features"}
      </button>
      {error && <div className="error">{error}</div>}
      {result && (
        <table className="numbers" data-testid="contrast-table">
          <thead>
            <tr>
              <th>feature</th>
              <th>held-out AUROC</th>
              <th>95% CI</th>
              <th>train AUROC</th>
              <th>mean diff</th>
              <th className="left">label</th>
            </tr>
          </thead>
          <tbody>
            {result.features.map((f) => (
              <tr key={f.feature} className="clickable" onClick={() => onOpen(f.feature)} data-testid="contrast-row">
                <td>{f.feature}</td>
                <td>{f.auroc.toFixed(3)}</td>
                <td>
                  [{f.ci_low.toFixed(2)}, {f.ci_high.toFixed(2)}]
                </td>
                <td>{f.auroc_train.toFixed(3)}</td>
                <td>{f.mean_diff.toFixed(3)}</td>
                <td className="left">{f.label ?? ""}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {result && (
        <p className="hint">
          Ranked on {result.n_train.positive}+{result.n_train.negative} training prompts; AUROC, interval and mean difference on the {result.n_heldout.positive}+{result.n_heldout.negative} held-out ones.
        </p>
      )}
    </div>
  );
}
