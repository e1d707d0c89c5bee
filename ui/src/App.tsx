import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import type { AttentionGrid as Grid, Attribution, HeadPattern, Lens, ModelInfo, Residual, WsResult } from "./api/client";
import { api, LiveRun } from "./api/client";
import { AttentionGrid } from "./components/AttentionGrid";
import { Generate } from "./components/Generate";
import { HeadHeatmap } from "./components/HeadHeatmap";
import { Interventions } from "./components/Interventions";
import { LogitLens } from "./components/LogitLens";
import { Neurons } from "./components/Neurons";
import { NextToken } from "./components/NextToken";
import { Panel } from "./components/Panel";
import { DirectLogitAttribution, PcaTrajectory, ResidualNorms } from "./components/ResidualViews";
import { TokenStrip } from "./components/TokenStrip";
import type { Interventions as IV, Pair } from "./state";
import { has, isEmpty, readUrl, toSpec, toggle, writeUrl } from "./state";

interface Async<T> {
  data: T | null;
  loading: boolean;
  error: string | null;
}
const idle = <T,>(): Async<T> => ({ data: null, loading: false, error: null });

/** Fetch ``fn()`` whenever ``deps`` change (after ``delay`` ms), dropping answers to superseded calls. */
function useView<T>(fn: (() => Promise<T>) | null, deps: unknown[], delay = 0): Async<T> {
  const [state, setState] = useState<Async<T>>(idle);
  const seq = useRef(0);
  useEffect(() => {
    const me = ++seq.current;
    if (!fn) {
      setState(idle);
      return;
    }
    setState((s) => ({ ...s, loading: true }));
    const timer = setTimeout(() => {
      fn().then(
        (data) => me === seq.current && setState({ data, loading: false, error: null }),
        (e: Error) => me === seq.current && setState({ data: null, loading: false, error: e.message }),
      );
    }, delay);
    return () => clearTimeout(timer);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
  return state;
}

export function App() {
  const initial = useMemo(readUrl, []);
  const [model, setModel] = useState<ModelInfo | null>(null);
  const [modelError, setModelError] = useState<string | null>(null);
  const [draft, setDraft] = useState(initial.prompt || "The Eiffel Tower is located in the city of");
  const [prompt, setPrompt] = useState(initial.prompt);
  const [iv, setIv] = useState<IV>(initial.iv);
  const [inputError, setInputError] = useState<string | null>(null);
  const [selected, setSelected] = useState<Pair | null>(null);
  const [run, setRun] = useState<Async<WsResult>>(idle);
  const [connected, setConnected] = useState(false);
  const live = useRef<LiveRun | null>(null);

  useEffect(() => {
    api.model().then(setModel, (e: Error) => setModelError(e.message));
    live.current = new LiveRun(
      (r) => setRun({ data: r, loading: false, error: null }),
      (msg) => setRun({ data: null, loading: false, error: msg }),
      setConnected,
    );
    return () => live.current?.close();
  }, []);

  const spec = useMemo(() => toSpec(iv), [iv]);
  const key = JSON.stringify(spec);

  useEffect(() => {
    writeUrl(prompt, iv);
    if (!prompt) return;
    setRun((s) => ({ ...s, loading: true }));
    live.current?.send(prompt, spec);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [prompt, key]);

  const grid = useView<Grid>(prompt ? () => api.attention(prompt) : null, [prompt]);
  const head = useView<HeadPattern>(prompt && selected ? () => api.head(prompt, selected[0], selected[1]) : null, [prompt, selected?.[0], selected?.[1]]);
  // Heavier views follow the interventions after a short pause, so dragging a slider does not queue dozens.
  const lens = useView<Lens>(prompt ? () => api.lens(prompt, spec) : null, [prompt, key], 250);
  const residual = useView<Residual>(prompt ? () => api.residual(prompt, spec) : null, [prompt, key], 250);
  const attribution = useView<Attribution>(prompt ? () => api.attribution(prompt, spec) : null, [prompt, key], 250);

  const submit = useCallback(() => {
    const text = draft;
    if (!text.trim()) {
      setInputError("Type a prompt first: the model needs at least one token.");
      return;
    }
    if (model && text.length > model.limits.max_prompt_chars) {
      setInputError(`The prompt is ${text.length} characters; this server accepts at most ${model.limits.max_prompt_chars}.`);
      return;
    }
    setInputError(null);
    setPrompt(text);
  }, [draft, model]);

  const toggleMlp = useCallback(
    (l: number) => setIv((old) => ({ ...old, mlps: old.mlps.includes(l) ? old.mlps.filter((x) => x !== l) : [...old.mlps, l].sort((a, b) => a - b) })),
    [],
  );
  const toggleHead = useCallback((p: Pair) => setIv((old) => ({ ...old, heads: toggle(old.heads, p) })), []);
  const toggleNeuron = useCallback((p: Pair) => setIv((old) => ({ ...old, neurons: toggle(old.neurons, p) })), []);

  if (modelError) {
    return (
      <main className="app">
        <div className="error banner" role="alert">
          {modelError}
        </div>
      </main>
    );
  }

  const tokens = run.data?.tokens ?? grid.data?.tokens ?? null;
  const serverError = run.error;
  return (
    <main className="app">
      <header className="top">
        <h1>
          NeuroScope <span className="muted">{model ? `${model.name} · ${model.n_layers} layers × ${model.n_heads} heads` : "loading model…"}</span>
        </h1>
        <span className={`conn ${connected ? "on" : "off"}`} data-testid="connection">
          {connected ? "live" : "connecting…"}
        </span>
      </header>

      <form
        className="prompt"
        onSubmit={(e) => {
          e.preventDefault();
          submit();
        }}
      >
        <textarea
          data-testid="prompt-input"
          value={draft}
          rows={2}
          onChange={(e) => setDraft(e.target.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter" && !e.shiftKey) {
              e.preventDefault();
              submit();
            }
          }}
          aria-label="prompt"
        />
        <button type="submit" data-testid="run-button">
          Run
        </button>
      </form>
      {(inputError || serverError) && (
        <div className="error banner" role="alert" data-testid="error-banner">
          {inputError ?? serverError}
        </div>
      )}
      {tokens && <TokenStrip tokens={tokens} scores={attribution.data?.token_scores} />}
      {attribution.data && <p className="hint">Token colour: gradient × input for “{attribution.data.target}” (red raises it, blue lowers it).</p>}

      {model && prompt && (
        <div className="layout">
          <Panel title="Interventions" testid="interventions-panel" wide>
            <Interventions model={model} iv={iv} onChange={setIv} prompt={prompt} />
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
      {!prompt && <p className="muted">Type a prompt and press Run (or Enter).</p>}
    </main>
  );
}
