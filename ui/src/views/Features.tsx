import { useEffect } from "react";
import type { SAEList } from "../api/client";
import { api } from "../api/client";
import { Contrast } from "../components/features/Contrast";
import { ExportBundle } from "../components/features/ExportBundle";
import { FeatureDetail } from "../components/features/FeatureDetail";
import { FeatureTable } from "../components/features/FeatureTable";
import { Panel } from "../components/Panel";
import { useView } from "../hooks";
import { navigate } from "../router";

// The feature laboratory: browse an SAE's features, open one, patch it live, find features by contrast, export.
// Route: #/features/<sae>/<feature>.
export function Features({ rest }: { rest: string[] }) {
  const saes = useView<SAEList>(() => api.saes(), []);
  const list = saes.data?.saes ?? [];
  const sae = rest[0] && list.some((s) => s.name === rest[0]) ? rest[0] : list[0]?.name;
  const id = rest[1] !== undefined && /^\d+$/.test(rest[1]) ? Number(rest[1]) : null;
  useEffect(() => {
    if (sae && rest[0] !== sae) navigate("features", sae);
  }, [sae, rest]);
  const open = (f: number) => sae && navigate("features", sae, f);

  if (saes.error) return <div className="error">{saes.error}</div>;
  if (saes.data && !list.length)
    return <p className="muted">No SAE attached: start the workbench with `neuroscope ui --sae DIR` (or `--bundle DIR`).</p>;
  if (!sae) return <p className="muted">loading…</p>;
  return (
    <>
      <div className="row">
        <label>
          SAE{" "}
          <select value={sae} onChange={(e) => navigate("features", e.target.value)} data-testid="sae-select">
            {list.map((s) => (
              <option key={s.name} value={s.name}>
                {s.name} ({s.hook}, {s.width} latents)
              </option>
            ))}
          </select>
        </label>
        <ExportBundle sae={sae} />
      </div>
      <div className="features-layout">
        <Panel title="Features" testid="features-panel">
          <FeatureTable sae={sae} selected={id} onSelect={open} />
        </Panel>
        <div>{id !== null ? <FeatureDetail key={`${sae}/${id}`} sae={sae} id={id} onOpen={open} /> : <p className="muted">Open a feature from the table.</p>}</div>
      </div>
      <Panel title="Contrast: features that separate two prompt sets" testid="contrast-panel" wide>
        <Contrast sae={sae} onOpen={open} />
      </Panel>
    </>
  );
}
