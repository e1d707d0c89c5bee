import { useState } from "react";
import type { ExportResult } from "../../api/client";
import { api } from "../../api/client";
import { useSession } from "../../store";

// Writes this client's active LoRA edits (with their SAEs and labels) as a bundle into the workspace.
export function ExportBundle({ sae }: { sae: string }) {
  const { iv } = useSession();
  const [name, setName] = useState("my-edits");
  const [result, setResult] = useState<ExportResult | null>(null);
  const [error, setError] = useState<string | null>(null);
  async function go() {
    setError(null);
    setResult(null);
    try {
      setResult(await api.exportBundle({ name, edits: iv.edits, saes: [sae] }));
    } catch (e) {
      setError((e as Error).message);
    }
  }
  return (
    <div className="row" data-testid="export">
      <input value={name} onChange={(e) => setName(e.target.value)} aria-label="bundle name" data-testid="export-name" />
      <button type="button" onClick={go} data-testid="export-button">
        Export bundle ({iv.edits.length} edit{iv.edits.length === 1 ? "" : "s"})
      </button>
      {result && (
        <span data-testid="export-result">
          wrote <span className="mono">{result.path}</span> ·{" "}
          <a href={result.download} download data-testid="export-download">
            download zip
          </a>
        </span>
      )}
      {error && <span className="error">{error}</span>}
    </div>
  );
}
