import { useQuery } from "@tanstack/react-query";
import { useEffect } from "react";
import type { SAEList, SuiteInfo } from "../api/client";
import { api } from "../api/client";
import { Contrast } from "../components/features/Contrast";
import { EvaluationPanel } from "../components/features/EvaluationPanel";
import { ExportBundle } from "../components/features/ExportBundle";
import { FeatureDetail } from "../components/features/FeatureDetail";
import { FeatureTable } from "../components/features/FeatureTable";
import { Panel } from "../components/Panel";
import { OpenProvenance } from "../graphLinks";
import { PrepareBanner, usePrepare } from "../components/PrepareStatus";
import { navigate } from "../router";

// The feature laboratory: browse an SAE's features, open one, patch it live, find features by contrast, export.
// Route: #/features/<sae>/<feature>.
export function Features({ rest }: { rest: string[] }) {
  const prep = usePrepare();
  // refetched when the prepared suite becomes ready (usePrepare invalidates "saes")
  const saes = useQuery({ queryKey: ["saes"], queryFn: api.saes, retry: false });
  const list = saes.data?.saes ?? [];
  const sae = rest[0] && list.some((s) => s.name === rest[0]) ? rest[0] : list[0]?.name;
  const id = rest[1] !== undefined && /^\d+$/.test(rest[1]) ? Number(rest[1]) : null;
  useEffect(() => {
    if (sae && rest[0] !== sae) navigate("features", sae);
  }, [sae, rest]);
  const open = (f: number) => sae && navigate("features", sae, f);
  // Provenance needs the SAE suite (--sae-suite); without one the query fails quietly and no link is shown.
  const suite = useQuery({ queryKey: ["graphs", "suite"], queryFn: api.suite, retry: false });
  const info = list.find((s) => s.name === sae);

  if (saes.error) return <div className="error">{(saes.error as Error).message}</div>;
  const banner = <PrepareBanner status={prep} what="its feature-layer SAE appears here when it is ready, with no restart." />;
  if (saes.data && !list.length)
    return (
      <>
        {banner}
        {(!prep || prep.state === "off" || prep.state === "failed" || prep.state === "ready") && (
          <p className="muted">No SAE attached: start the workbench with `neuroscope ui --sae DIR` (or `--bundle DIR`), or without `--no-prepare` to prepare a default one.</p>
        )}
        <EvaluationPanel />
      </>
    );
  if (!sae) return <p className="muted">loading…</p>;
  return (
    <>
      {banner}
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
      <EvaluationPanel />
      <div className="features-layout">
        <Panel title="Features" testid="features-panel">
          <FeatureTable sae={sae} selected={id} onSelect={open} />
        </Panel>
        <div>
          {id !== null && info && suite.data && <ProvenanceLink sae={info} suite={suite.data} feature={id} />}
          {id !== null ? <FeatureDetail key={`${sae}/${id}`} sae={sae} id={id} onOpen={open} /> : <p className="muted">Open a feature from the table.</p>}
        </div>
      </div>
      <Panel title="Contrast: features that separate two prompt sets" testid="contrast-panel" wide>
        <Contrast sae={sae} onOpen={open} />
      </Panel>
    </>
  );
}

type SAEInfo = SAEList["saes"][number];

// The suite's SAE for this SAE's layer and hook, when it has the same width: then feature ids mean the same
// latents when it is the same SAE (its folder inside the suite), which the link says; otherwise it warns.
function suiteLayer(sae: SAEInfo, suite: SuiteInfo): { same: boolean } | null {
  if (!suite.layers.includes(sae.layer) || sae.hook !== `blocks.${sae.layer}.hook_${suite.hook}`) return null;
  if (suite.d_sae[String(sae.layer)] !== sae.width) return null;
  const root = suite.path.replace(/\/+$/, "");
  const src = sae.source.replace(/\/+$/, "");
  return { same: src === `${root}/L${sae.layer}` || src.startsWith(`${root}/`) };
}

function ProvenanceLink({ sae, suite, feature }: { sae: SAEInfo; suite: SuiteInfo; feature: number }) {
  const match = suiteLayer(sae, suite);
  if (!match) return null;
  return (
    <p className="hint" data-testid="feature-provenance">
      <OpenProvenance layer={sae.layer} feature={feature} label={`open provenance of feature ${feature}`} /> on the current prompt (SAE suite, layer {sae.layer})
      {!match.same && <span className="muted"> — the suite's SAE at this hook has the same width but is another file: ids match only if it is the same SAE</span>}
    </p>
  );
}
