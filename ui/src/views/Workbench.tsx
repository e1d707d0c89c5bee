import { useCallback, useState } from "react";
import type { AttentionGrid as Grid, Attribution, HeadPattern, Lens, Residual } from "../api/client";
import { api } from "../api/client";
import { AttentionGrid } from "../components/AttentionGrid";
import { Generate } from "../components/Generate";
import { HeadHeatmap } from "../components/HeadHeatmap";
import { Interventions } from "../components/Interventions";
import { LogitLens } from "../components/LogitLens";
import { Neurons } from "../components/Neurons";
import { NextToken } from "../components/NextToken";
import { Panel } from "../components/Panel";
import { DirectLogitAttribution, PcaTrajectory, ResidualNorms } from "../components/ResidualViews";
import { RefusalBanner, RefusalSlider, useRefusalVector } from "../components/RefusalSteering";
import { TokenStrip } from "../components/TokenStrip";
import { useView } from "../hooks";
import type { Pair } from "../state";
import { has, isEmpty, toSpec, toggle } from "../state";
import { useSession } from "../store";

// The first view: every panel for the current prompt, with the live next-token run from the shell.
export function Workbench() {
  const { model, prompt, iv, setIv, run } = useSession();
  const [selected, setSelected] = useState<Pair | null>(null);
  const refusal = useRefusalVector();
  const spec = toSpec(iv);
  const key = JSON.stringify(spec);

  const grid = useView<Grid>(prompt ? () => api.attention(prompt) : null, [prompt]);
  const head = useView<HeadPattern>(prompt && selected ? () => api.head(prompt, selected[0], selected[1]) : null, [prompt, selected?.[0], selected?.[1]]);
  // Heavier views follow the interventions after a short pause, so dragging a slider does not queue dozens.
  const lens = useView<Lens>(prompt ? () => api.lens(prompt, spec) : null, [prompt, key], 250);
  const residual = useView<Residual>(prompt ? () => api.residual(prompt, spec) : null, [prompt, key], 250);
  const attribution = useView<Attribution>(prompt ? () => api.attribution(prompt, spec) : null, [prompt, key], 250);

  const toggleMlp = useCallback(
    (l: number) => setIv((old) => ({ ...old, mlps: old.mlps.includes(l) ? old.mlps.filter((x) => x !== l) : [...old.mlps, l].sort((a, b) => a - b) })),
    [setIv],
  );
  const toggleHead = useCallback((p: Pair) => setIv((old) => ({ ...old, heads: toggle(old.heads, p) })), [setIv]);
  const toggleNeuron = useCallback((p: Pair) => setIv((old) => ({ ...old, neurons: toggle(old.neurons, p) })), [setIv]);

  if (!prompt) return <p className="muted">Type a prompt and press Run (or Enter).</p>;
  const tokens = run.data?.tokens ?? grid.data?.tokens ?? null;
  return (
    <>
      <RefusalBanner iv={iv} vec={refusal} />
      {tokens && <TokenStrip tokens={tokens} scores={attribution.data?.token_scores} />}
      {attribution.data && <p className="hint">Token colour: gradient × input for “{attribution.data.target}” (red raises it, blue lowers it).</p>}
      {model && (
        <div className="layout">
          <Panel title="Interventions" testid="interventions-panel" wide>
            <Interventions model={model} iv={iv} onChange={setIv} prompt={prompt} />
            {refusal && <RefusalSlider iv={iv} onChange={setIv} vec={refusal} />}
          </Panel>
          <Panel title="Next token" testid="next-token-panel" loading={run.loading} error={null}>
            {run.data ? <NextToken run={run.data} intervened={!isEmpty(iv)} /> : !run.loading && <p className="muted">no result</p>}
          </Panel>
          <Panel title="Attention (layers × heads)" testid="attention-panel" loading={grid.loading} error={grid.error}>
            {grid.data && <AttentionGrid grid={grid.data} ablated={iv.heads} selected={selected} onSelect={setSelected} onToggle={toggleHead} />}
          </Panel>
          <Panel
            title={selected ? `Head L${selected[0]}H${selected[1]}: query × key` : "Head pattern"}
            testid="head-panel"
            loading={head.loading}
            error={head.error}
            extra={
              selected && (
                <button type="button" data-testid="ablate-selected" onClick={() => toggleHead(selected)}>
                  {has(iv.heads, selected) ? "restore head" : "ablate head"}
                </button>
              )
            }
          >
            {head.data ? <HeadHeatmap head={head.data} /> : <p className="muted">Click a head in the grid.</p>}
          </Panel>
          <Panel title="Logit lens (top token per layer × position)" testid="lens-panel" loading={lens.loading} error={lens.error} wide>
            {lens.data && <LogitLens lens={lens.data} />}
          </Panel>
          <Panel title="Residual stream norm" testid="residual-panel" loading={residual.loading} error={residual.error}>
            {residual.data && <ResidualNorms res={residual.data} />}
          </Panel>
          <Panel title="PCA trajectory of the last token" testid="pca-panel" loading={residual.loading} error={residual.error}>
            {residual.data && <PcaTrajectory res={residual.data} />}
          </Panel>
          <Panel title={`Direct logit attribution${attribution.data ? ` → “${attribution.data.target}”` : ""}`} testid="dla-panel" loading={attribution.loading} error={attribution.error}>
            {attribution.data && <DirectLogitAttribution attr={attribution.data} ablatedMlps={iv.mlps} onToggleMlp={toggleMlp} />}
          </Panel>
          <Panel
            title={`Top neurons${attribution.data ? ` → “${attribution.data.target}”` : ""} (direct effect, last position; click to ablate)`}
            testid="neurons-panel"
            loading={attribution.loading}
            error={attribution.error}
          >
            {attribution.data && <Neurons attr={attribution.data} ablated={iv.neurons} onToggle={toggleNeuron} />}
          </Panel>
          <Generate prompt={prompt} iv={iv} maxTokens={model.limits.max_new_tokens} />
        </div>
      )}
    </>
  );
}
