import { useState } from "react";
import type { Generation } from "../api/client";
import { api } from "../api/client";
import type { Interventions } from "../state";
import { toSpec } from "../state";
import { Panel } from "./Panel";

// Greedy continuation with the active interventions at every step, beside the plain one.
export function Generate({ prompt, iv, maxTokens }: { prompt: string; iv: Interventions; maxTokens: number }) {
  const [n, setN] = useState(Math.min(20, maxTokens));
  const [out, setOut] = useState<Generation | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  async function go() {
    setLoading(true);
    setError(null);
    try {
      setOut(await api.generate(prompt, toSpec(iv), n));
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setLoading(false);
    }
  }
  return (
    <Panel title="Generation (honours the interventions)" testid="generate-panel" loading={loading} error={error}>
      <div className="row">
        <label>
          new tokens <input type="number" min={1} max={maxTokens} value={n} onChange={(e) => setN(Math.max(1, Math.min(maxTokens, +e.target.value || 1)))} />
        </label>
        <button type="button" onClick={go} disabled={loading || !prompt} data-testid="generate-button">
          generate
        </button>
      </div>
      {out && (
        <div className="generation">
          <p data-testid="generation-text">
            <span className="muted">{prompt}</span>
            <b>{out.text}</b>
          </p>
          {out.baseline !== null && (
            <p className="baseline">
              plain run: <span className="muted">{prompt}</span>
              {out.baseline}
            </p>
          )}
        </div>
      )}
    </Panel>
  );
}
